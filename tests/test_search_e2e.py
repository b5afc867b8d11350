"""The whole search against a server of known capacity, and its exit codes."""

import json
import signal
import time

import pytest

from llmcap.profile import SearchParams, Slo
from llmcap.rundir import read_samples
from loadtest.simulated import Server, simulate_search
from tests.conftest import DEFAULTS, run_locust

pytestmark = pytest.mark.realtime  # timing against the wall clock: run alone (scripts/test.sh)

FAST = [
    "--start-rps",
    "40",
    "--growth",
    "2",
    "--step-seconds",
    "8",
    "--warmup-seconds",
    "4",
    "--confirm-seconds",
    "10",
    "--precision",
    "0.05",
    "--max-step-seconds",
    "20",
    "--max-concurrency",
    "300",
]
RESULT_FIELDS = {"max_sustained_rps", "first_failing_rps", "slo", "steps", "latency_at_max", "versions", "command"}
STEP_FIELDS = {
    "offered_rps",
    "achieved_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "itl_p95_ms",
    "error_rate",
    "mean_prompt_tokens",
    "mean_completion_tokens",
    "passed",
    "reason",
    "start",
    "end",
}


def search(stub, tmp_path, slo_ms, *extra):
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--run-dir",
        str(run_dir),
        "--slo-p95-ms",
        str(slo_ms),
        *FAST,
        *extra,
        # a search whose steps sit near the knee runs many undecided steps to their limit: one with
        # two processes here was still bisecting at 400 s (eight steps, four of them marginal)
        timeout_s=900,
    )
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").exists() else None
    return run, result


def check_result_schema(result):
    assert RESULT_FIELDS <= set(result)
    for step in result["steps"]:
        assert STEP_FIELDS <= set(step), STEP_FIELDS - set(step)
        assert isinstance(step["passed"], bool) and step["end"] > step["start"]
        check_verdict(step)
    assert set(result["latency_at_max"]) >= {"p50_ms", "p95_ms", "p99_ms", "ttft_p95_ms"}
    interval, answer = result["max_sustained_rps_interval"], result["max_sustained_rps"]
    assert interval["confidence"] == 0.95
    assert interval["high"] is None or interval["high"] > interval["low"]
    # the answer is fitted inside the interval, never past a rate measured
    assert interval["low"] <= answer <= min(interval["high"] or answer, max(s["offered_rps"] for s in result["steps"]))
    fit = result["max_sustained_rps_fit"]
    assert fit["rps"] == answer and (fit["fitted"] or answer == interval["low"])
    assert any(s["offered_rps"] == interval["low"] and s["phase"] == "confirm" and s["passed"] for s in result["steps"])
    if interval["high"] is not None:  # the interval's upper end is a step that failed with confidence
        assert any(s["offered_rps"] == interval["high"] and s["decision"] == "fail" for s in result["steps"])


def check_verdict(step):
    """Each decision is what its exceedance counts say, at the confidence they were judged at."""
    (p95,) = [e for e in step["exceedance"] if e["name"] == "p95"]
    assert p95["n"] > 0 and p95["low"] <= p95["fraction"] <= p95["high"]
    if step["decision"] == "pass":
        assert all(e["high"] <= e["allowed_fraction"] for e in step["exceedance"]), step["exceedance"]
        assert step["passed"]
    elif step["decision"] == "marginal":
        assert step["reason"].startswith("undecided after") and not step["passed"]
    else:
        assert step["decision"] == "fail" and not step["passed"]


HELD_BACK = "the machine held it back"  # the load generator's own evidence that its schedule slipped
SERVER_STALL_MS = 100.0  # the stub's event loop this late held every open request back at once


def server_stalls(stub, result) -> list[int]:
    """Steps that did not pass and whose window held a stall of the stub itself (tests/stub_server.py
    watches its event loop): the machine, not the queue, failed them. Seen here: a 0.92x-knee
    confirmation failed at its 2-s look when latency jumped by 150 ms for every request at once,
    with the generator on time (lateness under 6 ms), and the answer fell 10 % under the knee."""
    stalls = [s["end_s"] for s in stub.stats()["stalls"] if s["ms"] >= SERVER_STALL_MS]
    return [
        step["index"]
        for step in (result or {}).get("steps", [])
        # to a second past the window: its last requests finish then, and a stall still holds them
        if not step["passed"] and any(step["warmup_start"] <= t <= step["end"] + 1.0 for t in stalls)
    ]


def test_the_stub_reports_its_own_stalls(stub):
    """What server_stalls relies on: a stub held still (here by SIGSTOP, as a busy machine would)
    reports the stall with its end time; a stub running freely reports none."""
    stub.reset()
    time.sleep(0.5)
    assert stub.stats()["stalls"] == []
    stub.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.3)
    stub.proc.send_signal(signal.SIGCONT)
    resumed = time.time()
    time.sleep(0.1)
    (stall,) = stub.stats()["stalls"]
    assert stall["ms"] >= 250 and abs(stall["end_s"] - resumed) < 0.1, (stall, resumed)


def timed_search(stub, tmp_path, slots, service_ms, slo_ms, *extra):
    """One search of the queue; once more if the load generator reports that the machine stalled it
    (idle itself, requests sent late), or the stub stalled in a step that then failed
    (server_stalls): such a run is evidence about the machine, not the search. Seen in CI: two
    half-second stalls in the first step made it marginal and capped the answer at 40 of 147 req/s
    (lateness p99 376 ms with the generator at 8 % CPU)."""
    for attempt in (1, 2):
        stub.configure(**DEFAULTS)
        stub.reset()
        stub.configure(slots=slots, first_delay_ms=service_ms, chunks=1)
        t0 = time.time()
        (tmp_path / f"attempt-{attempt}").mkdir(exist_ok=True)
        run, result = search(stub, tmp_path / f"attempt-{attempt}", slo_ms, *extra)
        elapsed_s = time.time() - t0
        stalled = [s["index"] for s in (result or {}).get("steps", []) if HELD_BACK in (s.get("warning") or "")]
        server_stalled = server_stalls(stub, result)
        if not stalled and not server_stalled:
            break
        print(f"attempt {attempt}: steps {stalled} were held back by the machine, {server_stalled} by the stub's")
    return run, result, elapsed_s


# 100-ms slots, not 50: near 150-200 req/s on two shared cores the stub runs slower than the queue
# it models, and the test failed on the model, not the search (C=12, S=50 ms, p95 <= 110 ms: 30-s
# steps at 195 req/s had 5.1 % over the bound where the M/D/C queue has p95 79 ms, CI found -15 %;
# C=8, S=50, p95 <= 150: 4.1 % over at 137.5 req/s, model p95 109 ms, answers -6 % to -10.1 %)
C8 = (8, 100, 300)  # knee 73.8 req/s


@pytest.fixture(scope="module")
def single_process_c8(stub_server, tmp_path_factory):
    """One single-process search of the C=8 server, shared by the tests that check it and compare with it."""
    return timed_search(stub_server, tmp_path_factory.mktemp("single-c8"), *C8)


def simulated_range(slots: int, service_ms: float, slo_ms: float) -> tuple[float, float]:
    """Where the same search of the same server lands in virtual time (tests/test_search_sim.py):
    the lowest and highest of 20 seeded answers, widened by the bisection's precision, since one
    more draw falls outside the range of 20 one time in ten."""
    server, params = Server(slots, service_ms / 1000), SearchParams(**SIM_FAST)
    answers = [simulate_search(server, params, Slo(p95_ms=slo_ms), seed)[0].max_sustained_rps for seed in range(20)]
    precision = SIM_FAST["precision"]
    return min(answers) * (1 - precision), max(answers) * (1 + precision)


SIM_FAST = {k.lstrip("-").replace("-", "_"): float(v) for k, v in zip(FAST[0:-2:2], FAST[1:-2:2], strict=True)}


@pytest.mark.slow
def test_a_real_search_lands_where_the_simulated_ones_do(single_process_c8):
    """The real-time driver, over Locust and the stub, against the virtual-clock one on the same
    M/D/C server: the statistics of the search are tested in simulation, so the two must agree."""
    run, result, elapsed_s = single_process_c8
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check_result_schema(result)
    # relative to this machine: the steps' own windows, plus drains and start-up (not a fixed figure)
    measured_s = sum(step["end"] - step["warmup_start"] for step in result["steps"])
    assert elapsed_s < 1.5 * measured_s + 60, (elapsed_s, measured_s)
    low, high = simulated_range(*C8)
    found = result["max_sustained_rps"]
    print(f"real search C8: {found} req/s, simulated {low:.1f}..{high:.1f}, {elapsed_s:.0f} s")
    assert low <= found <= high, (found, low, high, run.stdout[-3000:])
    assert result["latency_at_max"]["p95_ms"] <= C8[2]


def distributed_step(stub, run_dir, rate_rps: float) -> dict:
    stub.configure(**DEFAULTS)
    stub.configure(slots=C8[0], first_delay_ms=C8[1], chunks=1)
    args = ["--run-dir", str(run_dir), "--slo-p95-ms", str(C8[2]), "--rps", f"{rate_rps:.2f}", "--duration", "12"]
    run = run_locust("loadtest/text2sql.py", stub.url, *args, "--processes", "2")
    step = json.loads((run_dir / "result.json").read_text())["steps"][0]
    assert run.returncode == (3 if step["decision"] == "fail" else 0), run.stdout[-3000:] + run.stderr[-2000:]
    assert len({s["worker"] for s in read_samples(run_dir)[0]}) == 2  # both processes sent load
    return step


@pytest.mark.slow
def test_two_processes_judge_both_sides_of_the_knee_one_found(stub, tmp_path, single_process_c8):
    """The multi-process collector's verdict, against the same server: two load-generating processes
    hold 0.85x the single-process answer and fail 1.3x it (past the 80 req/s the slots serve). A
    whole distributed search would check the search again, which the simulation does."""
    found = single_process_c8[1]["max_sustained_rps"]
    under = distributed_step(stub, tmp_path / "under", 0.85 * found)
    over = distributed_step(stub, tmp_path / "over", 1.3 * found)
    assert under["passed"] and under["arrival_rps"] == pytest.approx(0.85 * found, rel=0.15), under["reason"]
    assert not over["passed"] and over["decision"] == "fail", over["reason"]


def per_request_cpu_ms(stub, tmp_path) -> float:
    """What one request costs this machine's load generator: a short fixed-rate run, well within reach."""
    run_dir = tmp_path / "calibrate"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--run-dir",
        str(run_dir),
        "--rps",
        "300",
        "--duration",
        "5",
        "--max-concurrency",
        "100",
        "--no-report",
        timeout_s=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    step = json.loads((run_dir / "result.json").read_text())["steps"][0]
    return step["generator_cpu_percent"] / 100 / step["arrival_rps"] * 1000


def test_starved_load_generator_exits_4(stub, tmp_path):
    stub.configure(chunks=30)
    cost_ms = per_request_cpu_ms(stub, tmp_path)
    # three times what one whole core could send at that cost: past the limit on any machine
    rate = 3 * 1000 / cost_ms
    run, result = search(
        stub,
        tmp_path,
        1000,
        "--start-rps",
        f"{rate:.0f}",
        "--max-lateness-ms",
        "20",
        "--max-concurrency",
        "2000",
        "--step-seconds",
        "2",
        "--warmup-seconds",
        "1",
    )
    assert run.returncode == 4, f"{cost_ms:.2f} CPU-ms/request, offered {rate:.0f} req/s\n" + run.stdout[-3000:]
    assert "load generator is the bottleneck" in run.stdout
    assert result["max_sustained_rps"] is None and result["generator_bottleneck"]
