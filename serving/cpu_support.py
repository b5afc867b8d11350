"""What this machine's CPU lets vLLM's CPU engine serve, known before any model loads.

vLLM's CPU build refuses some variants only after it has loaded the model (minutes on a
slow machine), with the reason deep in its log. The same rules, checked against the CPU
flags first, let `serve` and `plan` say in one line that a variant cannot run here.
"""

from __future__ import annotations

import os
from pathlib import Path

# Overrides /proc/cpuinfo's flags (space-separated): to see what another CPU would refuse.
FLAGS_ENV = "LLMCAP_CPU_FLAGS"
CPUINFO = Path("/proc/cpuinfo")

# vLLM's CPU attention kernels for an FP8 KV cache exist only for AVX-512 and AMX (its cpu_attn.py asks
# torch.cpu._is_avx512_supported(), which needs these four, or _is_amx_tile_supported())
AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
AMX_FLAG = "amx_tile"


def _cpuinfo_field(name: str) -> str:
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> frozenset[str]:
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return frozenset(override.split())
    return frozenset(_cpuinfo_field("flags").split())


def cpu_model() -> str:
    return _cpuinfo_field("model name") or os.uname().machine


def instruction_sets(flags: frozenset[str] | None = None) -> str:
    """The flags that decide the CPU engine's speed and features, for reports and benchmarks."""
    flags = cpu_flags() if flags is None else flags
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    return " ".join(shown) or "none of avx2/avx512/amx"


def unsupported_reason(variant_args: dict, flags: frozenset[str] | None = None) -> str | None:
    """Why vLLM's CPU engine cannot serve a variant with these (effective) arguments on this CPU,
    or None when it can. `variant_args` is serving.launcher.effective_args()."""
    flags = cpu_flags() if flags is None else flags
    quantization = (variant_args.get("quantization") or "").lower()
    if quantization.startswith("fp8"):
        return "FP8 weights (quantization fp8) need a GPU: vLLM's CPU engine has no FP8 matmul kernels"
    kv = (variant_args.get("kv_cache_dtype") or "auto").lower()
    if kv.startswith("fp8") and not (AVX512_FLAGS <= flags or AMX_FLAG in flags):
        return (
            f"an FP8 KV cache on vLLM's CPU engine needs AVX-512 or AMX; this CPU ({cpu_model()}: "
            f"{instruction_sets(flags)}) has neither"
        )
    return None
