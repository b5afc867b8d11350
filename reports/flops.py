"""How far a measured rate is from what the hardware could do: two ceilings.

Compute. FLOPs per request for a dense decoder (Qwen3-style: GQA attention, SwiGLU MLP), counted
as vLLM computes them: the prompt's p tokens in one prefill and c - 1 decode steps run the layers
on p + c - 1 tokens; the LM head runs only where a token is sampled, c times (vLLM computes logits
for a prompt's last position, not every position); attention takes 4 x layers x heads x head_dim
FLOPs per (query, key) pair, causal. An FP8 variant runs its linear layers at the FP8 peak, while
the LM head and attention stay at the BF16 one (vLLM's FP8 quantizes the linear layers only).

Memory bandwidth. Each decode step reads every weight once, for the whole batch, and each
sequence's KV cache so far; a request holds its place in the batch for about c steps. At a
batch of B sequences and context (p + c/2) tokens on average:
    step time >= (weight bytes + B x (p + c/2) x KV bytes per token) / bandwidth
    ceiling    = B / (c x step time)  requests per second
A latency-bound service decoding small batches meets this ceiling long before the compute one.
Utilization of either (MFU, MBU) is the measured rate over the ceiling.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


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


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One accelerator's datasheet peaks (dense, no sparsity); None where it has no such peak."""

    bf16_tflops: float | None
    fp8_tflops: float | None
    memory_gib: float | None
    bandwidth_tbs: float | None  # HBM, TB/s (10^12 bytes per second)


# From the vendors' datasheets (SXM/PCIe as named).
HARDWARE: dict[str, Hardware] = {
    "H100-SXM": Hardware(989.4, 1978.9, 80, 3.35),
    "H100-PCIe": Hardware(756.0, 1513.0, 80, 2.0),
    "H200": Hardware(989.4, 1978.9, 141, 4.8),
    "B200": Hardware(2250.0, 4500.0, 180, 8.0),
    "A100-SXM": Hardware(312.0, None, 80, 2.04),
    "L40S": Hardware(362.1, 733.0, 48, 0.864),
    "L4": Hardware(121.0, 242.0, 24, 0.3),
    # the CPU demo: a shared two-core VM has no datasheet peak worth dividing by
    "CPU-2core": Hardware(None, None, None, None),
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


def flops_split(arch: Architecture, prompt_tokens: float, completion_tokens: float) -> dict[str, float]:
    """FLOPs of one request by where they run: linear layers, LM head, attention."""
    p, c = prompt_tokens, completion_tokens
    decode_inputs = max(c - 1.0, 0.0)  # the last sampled token is never fed back
    per_pair = 4.0 * arch.layers * arch.heads * arch.head_dim
    # prefill: query i attends to i keys; the decode input at position p + j attends to p + j keys
    pairs = p * (p + 1) / 2 + decode_inputs * p + decode_inputs * (decode_inputs + 1) / 2
    return {
        "linear": 2.0 * arch.layers * arch.layer_params * (p + decode_inputs),
        "lm_head": 2.0 * arch.vocab * arch.hidden * c,
        "attention": per_pair * pairs,
    }


def flops_per_request(arch: Architecture, prompt_tokens: float, completion_tokens: float) -> float:
    return sum(flops_split(arch, prompt_tokens, completion_tokens).values())


def kv_bytes_per_token(arch: Architecture, kv_bits: int) -> float:
    """K and V of every layer for one token."""
    return 2.0 * arch.layers * arch.kv_heads * arch.head_dim * kv_bits / 8


def precision_of(variant_args: dict) -> str:
    quant = (variant_args.get("quantization") or "").lower()
    return "fp8" if quant.startswith("fp8") else "bf16"


def compute_limit(
    arch: Architecture, hw: Hardware, precision: str, gpus: int, prompt_tokens: float, completion_tokens: float
) -> dict | None:
    """Requests per second if every FLOP ran at the datasheet peak; None without a peak."""
    if hw.bf16_tflops is None:
        return None
    split = flops_split(arch, prompt_tokens, completion_tokens)
    fp8 = precision == "fp8" and hw.fp8_tflops is not None
    linear_peak = (hw.fp8_tflops if fp8 else hw.bf16_tflops) * 1e12 * gpus  # type: ignore[operator]
    bf16_peak = hw.bf16_tflops * 1e12 * gpus
    seconds = split["linear"] / linear_peak + (split["lm_head"] + split["attention"]) / bf16_peak
    return {
        "precision": "fp8" if fp8 else "bf16",
        "peak_tflops": linear_peak / 1e12,
        "gflops_per_request": sum(split.values()) / 1e9,
        "compute_ceiling_rps": 1.0 / seconds,
    }


def bandwidth_limit(
    arch: Architecture,
    hw: Hardware,
    gpus: int,
    weight_bytes: float,
    kv_bits: int,
    prompt_tokens: float,
    completion_tokens: float,
    batch: float,
) -> dict | None:
    """Requests per second if decoding moved bytes at the datasheet bandwidth, at `batch` sequences
    (tensor parallel: each GPU reads its share); None without a bandwidth or output tokens."""
    if hw.bandwidth_tbs is None or completion_tokens <= 0:
        return None
    batch = max(batch, 1.0)
    context = prompt_tokens + completion_tokens / 2
    step_bytes = weight_bytes + batch * context * kv_bytes_per_token(arch, kv_bits)
    step_s = step_bytes / (hw.bandwidth_tbs * 1e12 * gpus)
    return {
        "bandwidth_tbs": hw.bandwidth_tbs * gpus,
        "batch": batch,
        "gb_per_decode_step": step_bytes / 1e9,
        "bandwidth_ceiling_rps": batch / (completion_tokens * step_s),
    }
