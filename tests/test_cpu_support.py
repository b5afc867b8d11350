"""What the CPU engine can serve on this CPU, decided before any model loads (flags injected)."""

import subprocess
import sys
import time
from pathlib import Path

from llmcap.profile import load_profile
from serving.cpu_support import FLAGS_ENV, cpu_flags, unsupported_reason
from serving.launcher import effective_args, log_reason, variant_unsupported
from tests.conftest import REPO
from tests.engine import AVX2_ONLY

LLMCAP = str(Path(sys.executable).with_name("llmcap"))
AVX512 = AVX2_ONLY + " avx512f avx512bw avx512vl avx512dq avx512_bf16"


def test_flags_come_from_cpuinfo_or_the_override(monkeypatch):
    monkeypatch.delenv(FLAGS_ENV, raising=False)
    assert "sse2" in cpu_flags()  # every x86-64 CPU has it
    monkeypatch.setenv(FLAGS_ENV, AVX2_ONLY)
    assert cpu_flags() == frozenset(AVX2_ONLY.split())


def test_fp8_kv_needs_avx512_or_amx():
    fp8_kv = {"kv_cache_dtype": "fp8", "dtype": "bfloat16"}
    reason = unsupported_reason(fp8_kv, frozenset(AVX2_ONLY.split()))
    assert reason and "AVX-512 or AMX" in reason and "avx2" in reason and "\n" not in reason
    assert unsupported_reason(fp8_kv, frozenset(AVX512.split())) is None
    assert unsupported_reason(fp8_kv, frozenset(AVX2_ONLY.split() + ["amx_bf16", "amx_tile"])) is None
    assert unsupported_reason(
        fp8_kv, frozenset(AVX2_ONLY.split() + ["avx512f"])
    )  # AVX-512 foundation alone is not enough
    assert unsupported_reason({"kv_cache_dtype": "fp8_e5m2"}, frozenset(AVX2_ONLY.split()))
    assert unsupported_reason({"dtype": "bfloat16"}, frozenset(AVX2_ONLY.split())) is None
    assert "need a GPU" in unsupported_reason({"quantization": "fp8"}, frozenset(AVX512.split()))


def test_demo_profile_runs_two_variants_on_any_x86(monkeypatch):
    monkeypatch.setenv(FLAGS_ENV, AVX2_ONLY)
    profile = load_profile(REPO / "profiles" / "cpu-tiny.yaml")
    runnable = [v for v in profile.serving.variants if variant_unsupported(profile, v) is None]
    assert runnable[:2] == ["bf16", "fp32"]
    assert variant_unsupported(profile, "fp8-kv")
    monkeypatch.setenv(FLAGS_ENV, AVX512)
    assert all(variant_unsupported(profile, v) is None for v in profile.serving.variants)


def test_gpu_profiles_are_not_judged_by_the_cpu(monkeypatch):
    monkeypatch.setenv(FLAGS_ENV, AVX2_ONLY)
    profile = load_profile(REPO / "profiles" / "text2sql-qwen3-4b-h100.yaml")
    assert effective_args(profile, "fp8")["quantization"] == "fp8"
    assert variant_unsupported(profile, "fp8") is None


def test_serve_refuses_an_unsupported_variant_in_one_line_before_starting(tmp_path):
    t0 = time.time()
    run = subprocess.run(
        [LLMCAP, "serve", str(REPO / "profiles" / "cpu-tiny.yaml"), "--variant", "fp8-kv", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, FLAGS_ENV: AVX2_ONLY},
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "fp8-kv cannot run on this machine" in run.stderr
    assert "AVX-512 or AMX" in run.stderr
    assert time.time() - t0 < 30 and not (tmp_path / "server").exists()  # nothing was started


def test_the_engine_log_names_why_it_died(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(
        'INFO starting\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "RuntimeError: FP8 KV cache on CPU requires x86 with AVX-512 or AMX\n"
        "ERROR 11-28 engine core failed\n"
    )
    assert log_reason(log) == "RuntimeError: FP8 KV cache on CPU requires x86 with AVX-512 or AMX"
    log.write_text("vllm.v1.engine.exceptions.EngineGenerateError: boom\n")
    assert log_reason(log) == "EngineGenerateError: boom"
    log.write_text("nothing to see\n")
    assert log_reason(log) is None
