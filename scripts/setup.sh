#!/usr/bin/env bash
# Install llmcap and its test tools into .venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q -e '.[test]' 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
.venv/bin/python -c "import llmcap, loadtest, serving, reports, locust" 
echo "llmcap installed in .venv"
