"""The whole search against a server of known capacity, and its exit codes."""
import json
import time

import pytest

from tests.conftest import run_locust
from tests.queueing import rate_at_slo

FAST = ["--start-rps", "40", "--growth", "2", "--step-seconds", "8", "--warmup-seconds", "4",
        "--confirm-seconds", "10", "--precision", "0.03", "--max-concurrency", "300"]
RESULT_FIELDS = {"max_sustained_rps", "first_failing_rps", "slo", "steps", "latency_at_max", "versions", "command"}
STEP_FIELDS = {"offered_rps", "achieved_rps", "p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms",
               "itl_p95_ms", "error_rate", "mean_prompt_tokens", "mean_completion_tokens", "passed", "reason",
               "start", "end"}


def search(stub, tmp_path, slo_ms, *extra):
    run_dir = tmp_path / "run"
    run = run_locust("loadtest/text2sql.py", stub.url, "--run-dir", str(run_dir), "--slo-p95-ms", str(slo_ms),
                     *FAST, *extra, timeout_s=400)
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").exists() else None
    return run, result


def check_result_schema(result):
    assert RESULT_FIELDS <= set(result)
    for step in result["steps"]:
        assert STEP_FIELDS <= set(step), STEP_FIELDS - set(step)
        assert isinstance(step["passed"], bool) and step["end"] > step["start"]
    assert set(result["latency_at_max"]) >= {"p50_ms", "p95_ms", "p99_ms", "ttft_p95_ms"}


@pytest.mark.slow
@pytest.mark.parametrize("slots,service_ms,slo_ms", [(8, 50, 150), (12, 50, 110)])
def test_search_finds_the_queueing_limit(stub, tmp_path, slots, service_ms, slo_ms):
    stub.configure(slots=slots, first_delay_ms=service_ms, chunks=1)
    expected = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=0.004)
    t0 = time.time()
    run, result = search(stub, tmp_path, slo_ms)
    elapsed_s = time.time() - t0
    print(f"search C={slots} S={service_ms} ms SLO {slo_ms} ms: found {result and result['max_sustained_rps']}, "
          f"M/D/C {expected:.1f} req/s, {elapsed_s:.0f} s")
    assert elapsed_s < 240  # the goal is 3 minutes; generous for a loaded CI machine
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check_result_schema(result)
    found = result["max_sustained_rps"]
    assert abs(found - expected) / expected <= 0.07, (found, expected, run.stdout[-3000:])
    assert result["first_failing_rps"] > found
    assert result["latency_at_max"]["p95_ms"] <= slo_ms


@pytest.mark.slow
def test_search_distributed_agrees(stub, tmp_path):
    stub.configure(slots=8, first_delay_ms=50, chunks=1)
    expected = rate_at_slo(150, 8, 0.05, overhead_s=0.004)
    run, result = search(stub, tmp_path, 150, "--processes", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check_result_schema(result)
    workers = {s["worker"] for s in __import__("loadtest.samples", fromlist=["x"]).read_samples(tmp_path / "run")[0]}
    assert len(workers) == 2  # both processes sent load
    assert abs(result["max_sustained_rps"] - expected) / expected <= 0.07


def test_server_failing_everything_exits_3(stub, tmp_path):
    stub.configure(fault="status", fault_status=503)
    run, result = search(stub, tmp_path, 1000)
    assert run.returncode == 3, run.stdout[-2000:]
    assert "no sustained rate" in run.stdout and "error rate 100.0%" in run.stdout
    assert result["max_sustained_rps"] is None and len(result["steps"]) == 1


def test_starved_load_generator_exits_4(stub, tmp_path):
    stub.configure(chunks=30)
    run, result = search(stub, tmp_path, 1000, "--start-rps", "4000", "--max-lateness-ms", "20",
                         "--max-concurrency", "2000", "--step-seconds", "2", "--warmup-seconds", "1")
    assert run.returncode == 4, run.stdout[-3000:]
    assert "load generator is the bottleneck" in run.stdout
    assert result["max_sustained_rps"] is None and result["generator_bottleneck"]
