"""Helpers for tests on the real vLLM CPU engine (skipped, with the reason, when it is not installed)."""

import functools
import os
import subprocess

import pytest

from llmcap.profile import load_profile
from tests.conftest import REPO

# the flags of a CPU without AVX-512 or AMX (an AMD EPYC Rome/Milan, say), for LLMCAP_CPU_FLAGS
AVX2_ONLY = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c"
ENGINE_PY = REPO / ".engine" / "venv" / "bin" / "python"
CPU_PROFILE = REPO / "profiles" / "cpu-tiny.yaml"


@functools.lru_cache(maxsize=1)
def engine_available() -> bool:
    return (
        ENGINE_PY.exists()
        and subprocess.run([str(ENGINE_PY), "-c", "import vllm"], capture_output=True).returncode == 0
    )


needs_engine = pytest.mark.skipif(
    not engine_available(), reason="vLLM CPU engine not installed (scripts/install-cpu-engine.sh)"
)


def cpu_profile():
    from llmcap.tiny_model import ensure_tiny_model

    profile = load_profile(CPU_PROFILE)
    ensure_tiny_model(profile)
    return profile


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
