#!/usr/bin/env bash
# The GPU check: llmcap end to end on one GPU, with `transformers serve` as the engine (vLLM cannot be
# installed on a machine without network), BF16 against FP8 weights, NVML telemetry per step.
#
#   bash scripts/gpu-check.sh OUT_DIR
#
# 1. builds a random-weight model with Qwen3-4B's architecture on the card (no download) and, where the
#    installed transformers can, a copy with FP8 weights (fine-grained FP8, 128x128 blocks);
# 2. writes a profile for them (engine transformers, variants bf16 and fp8) and runs `llmcap plan`
#    with short search settings: it starts each server, the GPU exporter and the rate search;
# 3. scrapes the GPU exporter on its own every few seconds (a fixture for the exporter's tests);
# 4. packs everything into OUT_DIR/gpu-run.tgz (run directories, reports, scrapes, logs, versions).
#
# Every phase has a time limit, so a slow or failing phase leaves time for the rest, and what was
# measured always comes back. Wheels in .whl/ (locust, fastapi, ... for Python 3.12: see
# docs/gpu-check.md) are installed first where the machine lacks them.
# Rehearsal on a CPU: LLMCAP_GPU_SHAPE=tiny LLMCAP_GPU_PYTHON=.engine/venv/bin/python \
#   LLMCAP_PYTHON=.venv/bin/python LLMCAP_GPU_WHEELS= bash scripts/gpu-check.sh /tmp/out
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: gpu-check.sh OUT_DIR}")
mkdir -p "$out"
work=${LLMCAP_GPU_WORK:-/tmp/llmcap-gpu}
shape=${LLMCAP_GPU_SHAPE:-qwen3-4b}
python=${LLMCAP_GPU_PYTHON:-python3}   # has torch and transformers: builds the model, runs the server
llmcap=${LLMCAP_PYTHON:-$python}        # runs llmcap (the same one on the GPU machine)
plan_s=${LLMCAP_GPU_PLAN_S:-300}       # both variants' searches together
fp8_copy=${LLMCAP_GPU_FP8:-1}          # 0: no FP8 variant
slo_p95_ms=${LLMCAP_GPU_SLO_P95_MS:-5000}
start_rps=${LLMCAP_GPU_START_RPS:-4}
rm -rf "$work" && mkdir -p "$work/exporter"
exec > >(tee -a "$work/gpu-check.log") 2>&1
t0=$SECONDS
say() { echo "[gpu-check $((SECONDS - t0))s] $*"; }

pack() {
  say "packing results"
  kill "${scrape_pid:-}" "${exporter_pid:-}" 2>/dev/null
  tar czf "$out/gpu-run.tgz" -C "$work" --exclude='models/*/*.safetensors' \
    --exclude='models/*/tokenizer.json' . 2>/dev/null
  cp "$work/gpu-check.log" "$out/" 2>/dev/null
  ls -la "$out"
}
trap pack EXIT

wheels=${LLMCAP_GPU_WHEELS-.whl}       # empty: install nothing (a rehearsal in llmcap's own venv)
if [ -n "$wheels" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
  say "installing $(ls "$wheels"/*.whl | wc -l) wheels into /tmp/site"
  "$llmcap" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
    || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

say "machine"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv
  "$python" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  nproc
} | tee "$work/machine.txt"
"$python" -c "from transformers.cli.transformers import main; main()" serve --help >"$work/serve-help.txt" 2>&1 \
  || say "transformers serve --help failed: $(tail -1 "$work/serve-help.txt")"

say "building the ${shape} model (random weights) and its FP8 copy"
mkdir -p "$work/models"
fp8=("--fp8-out" "$work/models/fp8")
{ [ "$shape" = tiny ] || [ "$fp8_copy" = 0 ]; } && fp8=()
if ! timeout 300 "$llmcap" -m llmcap.cli tiny-model "$work/models/bf16" --shape "$shape" --python "$python" "${fp8[@]}"; then
  say "build with the FP8 copy failed; building BF16 alone"
  rm -rf "$work/models"
  timeout 240 "$llmcap" -m llmcap.cli tiny-model "$work/models/bf16" --shape "$shape" --python "$python" \
    || { say "model build failed"; exit 1; }
fi
du -sh "$work"/models/* | tee -a "$work/machine.txt"

device=gpu
[ "$shape" = tiny ] && device=cpu
{
  cat <<EOF
# written by scripts/gpu-check.sh: a random-weight model with Qwen3-4B's architecture on transformers serve
name: gpu-${shape}-transformers
description: random-weight ${shape} on transformers serve (GPU check; not vLLM, not a trained model)
dataset:
  task: text2sql
  path: $PWD/examples/text2sql/test.jsonl
model:
  id: $work/models/bf16
serving:
  engine: transformers
  device: $device
  python: $(realpath -s "$(command -v "$python")")
  port: 8300
  startup_timeout_s: 180
  variants:
    bf16: {dtype: bfloat16}
EOF
  if [ -f "$work/models/fp8/config.json" ]; then
    echo "    fp8: {model: $work/models/fp8, dtype: bfloat16}"
  fi
  cat <<EOF
request:
  max_tokens: 32
  ignore_eos: true
  temperature: 0
  timeout_s: 30
slo:
  p95_ms: $slo_p95_ms
search:
  start_rps: $start_rps
  growth: 2
  precision: 0.2
  max_concurrency: 1024
cost:
  gpu: H200
  gpus_per_replica: 1
  usd_per_gpu_hour: 3.50
  utilizations: [1.0, 0.1]
EOF
} >"$work/profile.yaml"
cat "$work/profile.yaml"

if [ "$device" = gpu ]; then
  "$llmcap" -m llmcap.cli gpu-exporter --port 9399 >"$work/exporter/exporter.log" 2>&1 &
  exporter_pid=$!
  (
    i=0
    while sleep 4; do
      i=$((i + 1))
      "$llmcap" -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9399/metrics', timeout=3).read().decode())" \
        >"$work/exporter/scrape-$(printf %03d $i).prom" 2>/dev/null
    done
  ) &
  scrape_pid=$!
fi

say "llmcap plan (at most ${plan_s} s)"
timeout -s INT -k 40 "$plan_s" "$llmcap" -m llmcap.cli plan "$work/profile.yaml" --out "$work/plan" -- \
  --step-seconds 4 --warmup-seconds 2 --confirm-seconds 6 --max-step-seconds 12
say "plan exited with code $?"
nvidia-smi >"$work/nvidia-smi-after.txt" 2>&1
