#!/usr/bin/env bash
# The main job end to end on a machine with no GPU: install llmcap and the vLLM CPU engine, build the
# tiny model, and compare BF16 with FP32 weights (and an FP8 KV cache where the CPU has AVX-512 or AMX)
# on the real engine. Ends with the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-cpu-engine.sh
exec .venv/bin/llmcap plan profiles/cpu-tiny.yaml "$@"
