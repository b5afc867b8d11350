"""How far a measured rate is from what the GPU could compute.

FLOPs per request for a dense decoder (Qwen3-style: GQA attention, SwiGLU MLP):
  matmuls:   2 x (parameters in matmuls, LM head included) per token, prompt and output
  attention: 4 x layers x heads x head_dim per (query token, key token) pair, causal
             (QK^T and AV: 2 FLOPs per multiply-add each)
The ceiling is peak dense FLOP/s divided by FLOPs per request; model-FLOPs
utilization (MFU) is measured rate / ceiling. Decoding small batches is usually
bound by memory bandwidth well before compute, so MFU of a latency-bound service
is low: that gap is the headroom batching could buy, not a defect.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool

    @property
    def layer_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp

    @property
    def matmul_params(self) -> int:
        """Parameters multiplied per token: all layers plus the LM head (embedding lookup is free)."""
        return self.layers * self.layer_params + self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        norms = self.layers * (2 * self.hidden + 2 * self.head_dim) + self.hidden
        return self.layers * self.layer_params + embeddings + norms

    def weight_bytes(self, weight_bits: int) -> float:
        """Weights in memory: linear layers at `weight_bits`; embeddings and norms at 16 bits when the linear
        layers are quantized (as vLLM's FP8 does), else at the same width as the rest."""
        linear = self.layers * self.layer_params
        rest = self.total_params - linear  # embeddings, an untied LM head, norms
        return linear * weight_bits / 8 + rest * max(weight_bits, 16) / 8


# Published configs (config.json on the Hugging Face hub), for models not on local disk.
KNOWN = {
    "qwen3-0.6b": Architecture(1024, 28, 16, 8, 128, 3072, 151936, True),
    "qwen3-1.7b": Architecture(2048, 28, 16, 8, 128, 6144, 151936, True),
    "qwen3-4b": Architecture(2560, 36, 32, 8, 128, 9728, 151936, True),
    "qwen3-8b": Architecture(4096, 36, 32, 8, 128, 12288, 151936, False),
}

# Peak dense (no sparsity) tensor FLOP/s, in TFLOPS, from the vendors' datasheets.
GPU_PEAK_TFLOPS: dict[str, dict[str, Any]] = {  # None: no such peak
    "H100-SXM": {"bf16": 989.4, "fp8": 1978.9, "memory_gib": 80, "bandwidth_tbs": 3.35},
    "H100-PCIe": {"bf16": 756.0, "fp8": 1513.0, "memory_gib": 80, "bandwidth_tbs": 2.0},
    "H200": {"bf16": 989.4, "fp8": 1978.9, "memory_gib": 141, "bandwidth_tbs": 4.8},
    "B200": {"bf16": 2250.0, "fp8": 4500.0, "memory_gib": 180, "bandwidth_tbs": 8.0},
    "A100-SXM": {"bf16": 312.0, "fp8": None, "memory_gib": 80, "bandwidth_tbs": 2.04},
    "L40S": {"bf16": 362.1, "fp8": 733.0, "memory_gib": 48, "bandwidth_tbs": 0.864},
    "L4": {"bf16": 121.0, "fp8": 242.0, "memory_gib": 24, "bandwidth_tbs": 0.3},
    # a rough figure for the CPU demo (2 AVX-512 cores): it makes the column meaningful, not precise
    "CPU-2core": {"bf16": 0.2, "fp8": None, "memory_gib": None, "bandwidth_tbs": 0.02},
}


def architecture_of(model_id: str) -> Architecture | None:
    """From a local checkpoint's config.json, else the table of known models (matched by name)."""
    config = Path(model_id) / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        heads = c["num_attention_heads"]
        return Architecture(
            c["hidden_size"],
            c["num_hidden_layers"],
            heads,
            c.get("num_key_value_heads", heads),
            c.get("head_dim") or c["hidden_size"] // heads,
            c["intermediate_size"],
            c["vocab_size"],
            bool(c.get("tie_word_embeddings", False)),
        )
    name = model_id.lower()
    for key in sorted(KNOWN, key=len, reverse=True):
        if key in name:
            return KNOWN[key]
    return None


def flops_per_request(arch: Architecture, prompt_tokens: float, completion_tokens: float) -> float:
    p, c = prompt_tokens, completion_tokens
    linear = 2.0 * arch.matmul_params * (p + c)
    per_pair = 4.0 * arch.layers * arch.heads * arch.head_dim
    # causal prefill: query i attends to i keys; decode token j attends to p + j keys
    attention = per_pair * (p * (p + 1) / 2 + c * p + c * (c + 1) / 2)
    return linear + attention


def precision_of(variant_args: dict) -> str:
    quant = (variant_args.get("quantization") or "").lower()
    return "fp8" if quant.startswith("fp8") else "bf16"


def hardware_limit(
    arch: Architecture,
    gpu: str,
    precision: str,
    gpus: int,
    prompt_tokens: float,
    completion_tokens: float,
    measured_rps: float | None,
) -> dict | None:
    peak = GPU_PEAK_TFLOPS.get(gpu)
    if peak is None:
        return None
    tflops = peak.get(precision) or peak["bf16"]
    per_request = flops_per_request(arch, prompt_tokens, completion_tokens)
    ceiling = tflops * 1e12 * gpus / per_request
    return {
        "gpu": gpu,
        "precision": precision if peak.get(precision) else "bf16",
        "peak_tflops": tflops * gpus,
        "gflops_per_request": per_request / 1e9,
        "compute_ceiling_rps": ceiling,
        "mfu": measured_rps / ceiling if measured_rps else None,
    }
