#!/usr/bin/env bash
# Install everything (tool, vLLM CPU engine, tiny model) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${LLMCAP_SKIP_ENGINE:-0}" != 1 ]; then
  bash scripts/install-cpu-engine.sh
fi
exec .venv/bin/python -m pytest -q -ra "$@"
