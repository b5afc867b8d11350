#!/usr/bin/env bash
# Install everything (tool, vLLM CPU engine, a headless browser for the HTML report test), check the
# code (ruff lint and format, mypy), and run the whole test suite in two pytest runs: while the engine
# and the browser install, the tests that need neither, nor the stub server, nor the wall clock; then
# the rest. A failure anywhere fails the script. Arguments go to both runs (a -m of yours replaces the split).
set -euo pipefail
cd "$(dirname "$0")/.."
AFTER_INSTALLS="engine or browser or stub or realtime"  # pytest markers (pyproject.toml)

finished() {  # wait for a background install ($1, pid $2) and show its log; its failure fails the script
  wait "$2" || { cat "$logs/$1.log"; echo "$1 install failed" >&2; return 1; }
  cat "$logs/$1.log"
}

run_tests() {  # a selection with no tests in it (pytest's exit 5) is no failure
  .venv/bin/python -m pytest -q -ra --durations=25 "$@" || [ $? = 5 ]
}

bash scripts/setup.sh
logs=$(mktemp -d)
trap 'wait; rm -rf "$logs"' EXIT # an install is never cut off half-way, even when a check fails first
engine=""
if [ "${LLMCAP_SKIP_ENGINE:-0}" != 1 ]; then
  bash scripts/install-cpu-engine.sh >"$logs/engine.log" 2>&1 &
  engine=$!
fi
bash scripts/install-browser.sh >"$logs/browser.log" 2>&1 &
browser=$!
echo "checking the code: ruff, ruff format, mypy (the engine and the browser install meanwhile)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
echo "tests beside the installs: not ($AFTER_INSTALLS)"
run_tests -m "not ($AFTER_INSTALLS)" "$@"
if [ -n "$engine" ]; then finished engine "$engine"; fi
finished browser "$browser"
echo "tests after the installs: $AFTER_INSTALLS"
run_tests -m "$AFTER_INSTALLS" "$@"
