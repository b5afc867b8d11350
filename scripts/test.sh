#!/usr/bin/env bash
# Install everything (tool, vLLM CPU engine, a headless browser for the HTML report test), check the
# code (ruff lint and format, mypy), and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${LLMCAP_SKIP_ENGINE:-0}" != 1 ]; then
  bash scripts/install-cpu-engine.sh
fi
bash scripts/install-browser.sh
echo "checking the code: ruff, ruff format, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra --durations=25 "$@"
