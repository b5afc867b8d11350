#!/usr/bin/env bash
# Install everything (tool, vLLM CPU engine, a headless browser for the HTML report test, Prometheus
# for the dashboard's queries), check the code (ruff lint and format, mypy), and run the whole test
# suite: while the engine and the Debian packages install, the tests that need none of them, nor the
# stub server, nor the wall clock; then the stub's and the browser's untimed tests in three parts at
# once (they mostly wait: two kept two cores a third busy); then the engine's tests alone (CPU-bound,
# the Prometheus test among them); then the wall-clock tests alone. A failure anywhere fails the
# script. Arguments go to every run; with a -m of yours, one run after the installs instead.
set -euo pipefail
cd "$(dirname "$0")/.."
AFTER_INSTALLS="engine or browser or stub or realtime"  # pytest markers (pyproject.toml)
WAITING="(stub or browser) and not (engine or realtime)"
PARTS=3

finished() {  # wait for a background install ($1, pid $2) and show its log; its failure fails the script
  wait "$2" || { cat "$logs/$1.log"; echo "$1 install failed" >&2; return 1; }
  cat "$logs/$1.log"
}

run_tests() {  # a selection with no tests in it (pytest's exit 5) is no failure
  .venv/bin/python -m pytest -q -ra --durations=25 "$@" || [ $? = 5 ]
}

in_parts() {  # the selection $1 in PARTS shards at once (tests/shard.py); every log shown, any failure fails
  local pids=() status=0 k
  for k in $(seq 1 "$PARTS"); do
    run_tests -m "$1" --shard "$k/$PARTS" --basetemp "$logs/tmp-$k" "${@:2}" >"$logs/part-$k.log" 2>&1 &
    pids+=($!)
  done
  for k in $(seq 1 "$PARTS"); do
    wait "${pids[$((k - 1))]}" || status=1
    echo "--- part $k of $PARTS"; cat "$logs/part-$k.log"
  done
  return "$status"
}

bash scripts/setup.sh
logs=$(mktemp -d)
trap 'wait; rm -rf "$logs"' EXIT # an install is never cut off half-way, even when a check fails first
engine=""
if [ "${LLMCAP_SKIP_ENGINE:-0}" != 1 ]; then
  bash scripts/install-cpu-engine.sh >"$logs/engine.log" 2>&1 &
  engine=$!
fi
# one apt-get at a time: two would race for dpkg's lock
(bash scripts/install-browser.sh && bash scripts/install-prometheus.sh) >"$logs/debian.log" 2>&1 &
debian=$!
echo "checking the code: ruff, ruff format, mypy (the engine, Chromium and Prometheus install meanwhile)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
if [[ " $* " == *" -m "* ]]; then  # your own selection: one run, once everything is installed
  if [ -n "$engine" ]; then finished engine "$engine"; fi
  finished debian "$debian"
  run_tests "$@"
  exit
fi
echo "tests beside the installs: not ($AFTER_INSTALLS)"
run_tests -m "not ($AFTER_INSTALLS)" "$@"
if [ -n "$engine" ]; then finished engine "$engine"; fi
finished debian "$debian"
echo "tests after the installs, in $PARTS parts at once: $WAITING"
in_parts "$WAITING" "$@"
echo "the engine's tests, alone: engine"
run_tests -m engine "$@"
echo "tests on the wall clock, alone: realtime and not engine"
run_tests -m "realtime and not engine" "$@"
