"""The whole search against a server of known capacity, and its exit codes."""

import json
import signal
import time

import pytest

from llmcap.rundir import read_samples
from tests.conftest import DEFAULTS, run_locust
from tests.queueing import rate_at_slo

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
    "0.03",
    "--max-step-seconds",
    "30",
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
        # a search whose steps sit near the knee runs many undecided steps to their 30-60 s limit: one with
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


def model_knee(slots: int, service_ms: float, slo_ms: float) -> float:
    """The stub's steady-state knee under Poisson arrivals: the M/D/C queue with the client's ~4 ms."""
    return rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=0.004)


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


@pytest.mark.slow
@pytest.mark.parametrize("slots,service_ms,slo_ms", [C8, (12, 100, 220)])
def test_search_finds_the_queueing_limit(stub, tmp_path, request, slots, service_ms, slo_ms):
    expected = model_knee(slots, service_ms, slo_ms)
    if (slots, service_ms, slo_ms) == C8:
        run, result, elapsed_s = request.getfixturevalue("single_process_c8")
    else:
        run, result, elapsed_s = timed_search(stub, tmp_path, slots, service_ms, slo_ms)
    print(
        f"search C={slots} S={service_ms} ms SLO {slo_ms} ms: found {result and result['max_sustained_rps']}, "
        f"M/D/C {expected:.1f} req/s, {elapsed_s:.0f} s"
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check_result_schema(result)
    # relative to this machine: the steps' own windows, plus drains and start-up (not a fixed figure)
    measured_s = sum(step["end"] - step["warmup_start"] for step in result["steps"])
    assert elapsed_s < 1.5 * measured_s + 60, (elapsed_s, measured_s)
    found = result["max_sustained_rps"]
    # -10 %..+5 %, as the other knee tests (the rate that passed, the answer before it was fitted, gave
    # -6.3 % and -6.7 % here, and in CI once just past -7 %; C=12: -4.3 % twice)
    assert -0.10 <= found / expected - 1 <= 0.05, (found, expected, run.stdout[-3000:])
    # the bisection's lowest rate not passed lies above the rate that passed (the fitted answer may not:
    # a marginal step is not a failure with confidence)
    assert result["first_failing_rps"] > result["max_sustained_rps_interval"]["low"]
    assert result["latency_at_max"]["p95_ms"] <= slo_ms


# the two settings of benchmarks/search_accuracy.py (which repeats each ten times)
QUEUES = {"many-slots": (16, 100, 300, 40), "few-slots": (4, 200, 600, 4)}


@pytest.mark.slow
@pytest.mark.parametrize("setting", QUEUES)
def test_interval_brackets_the_knee_of_a_queue(stub, tmp_path, setting):
    """Poisson arrivals at an M/D/C queue, the default windows: the answer is near the steady-state
    knee, the interval reaches it, and every verdict agrees with its own counts."""
    slots, service_ms, slo_ms, start = QUEUES[setting]
    knee = model_knee(slots, service_ms, slo_ms)
    stub.configure(slots=slots, first_delay_ms=service_ms, chunks=1)
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--run-dir",
        str(run_dir),
        "--slo-p95-ms",
        str(slo_ms),
        "--start-rps",
        str(start),
        "--max-concurrency",
        "600",
        timeout_s=1500,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    check_result_schema(result)
    found, interval = result["max_sustained_rps"], result["max_sustained_rps_interval"]
    print(f"{setting}: found {found} req/s, interval {interval}, knee {knee:.2f}")
    assert LOW[setting] <= found / knee - 1 <= HIGH[setting], (found, knee, run.stdout[-3000:])
    # the interval reaches the knee, to within the same bounds: one interval holds the knee only most
    # of the time (nine searches of ten against the stub, 48 and 54 of 60 simulated: benchmarks/README.md,
    # where that rate is measured); CI once saw a quiet 40-s window pass 18.0 req/s, 7.5 % above the
    # few-slot knee, with 4 of 676 requests over the bound
    assert interval["low"] <= knee * (1 + HIGH[setting])
    assert interval["high"] is None or interval["high"] >= knee * (1 + LOW[setting])


# generous bounds: near a slowly swinging queue's knee a pass needs much evidence, and the fitted
# answer has little above the rate that passed to fit when the steps there fell on a slow spell: ten
# searches against the stub landed at -8.2 %..+7.5 % (few slots) and -6.0 %..-1.0 % (many), sixty
# simulated ones at -13.4 %..+5.5 % and -4.4 %..+3.7 % (benchmarks/README.md)
LOW = {"many-slots": -0.12, "few-slots": -0.20}
HIGH = {"many-slots": 0.05, "few-slots": 0.10}


@pytest.mark.slow
def test_search_distributed_agrees(stub, tmp_path, single_process_c8):
    """Two load-generating processes find what one finds, against the same server."""
    run, result, _ = timed_search(stub, tmp_path, *C8, "--processes", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    check_result_schema(result)
    run_dir = max(tmp_path.glob("attempt-*/run"))  # the last attempt's
    workers = {s["worker"] for s in read_samples(run_dir)[0]}
    assert len(workers) == 2  # both processes sent load
    single, distributed = single_process_c8[1], result
    low = max(single["max_sustained_rps_interval"]["low"], distributed["max_sustained_rps_interval"]["low"])
    highs = [r["max_sustained_rps_interval"]["high"] or float("inf") for r in (single, distributed)]
    assert low < min(highs), (single["max_sustained_rps_interval"], distributed["max_sustained_rps_interval"])
    # the two answers within the width the knee tests allow one search (10 % under): a second process
    # on the shared cores slows the stub, and an undecided step counts as failed. A fresh-clone run here:
    # one process 70.0 (70-80), two 63.75 (63.75-80), their 65-req/s step marginal at 3.5 % over after 60 s
    assert abs(distributed["max_sustained_rps"] / single["max_sustained_rps"] - 1) <= 0.10, (
        single["max_sustained_rps"],
        distributed["max_sustained_rps"],
    )


@pytest.mark.slow
def test_start_rate_above_capacity_steps_down_and_finds_it(stub, tmp_path):
    slots, service_ms, slo_ms = C8
    stub.configure(slots=slots, first_delay_ms=service_ms, chunks=1)
    expected = model_knee(slots, service_ms, slo_ms)
    run, result = search(stub, tmp_path, slo_ms, "--start-rps", "240")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    phases = [(round(s["offered_rps"]), s["phase"], s["passed"]) for s in result["steps"]]
    assert phases[:3] == [(240, "grow", False), (120, "descend", False), (60, "descend", True)], phases
    # as the other knee tests: the rate that passed sits at or below the knee, the fit near it
    assert -0.10 <= result["max_sustained_rps"] / expected - 1 <= 0.05, (result["max_sustained_rps"], expected)


def test_server_failing_everything_exits_3(stub, tmp_path):
    stub.configure(fault="status", fault_status=503)
    run, result = search(stub, tmp_path, 1000, "--min-rps", "10")
    assert run.returncode == 3, run.stdout[-2000:]
    assert "no sustained rate: even 10 req/s fails" in run.stdout and "error rate 100.0%" in run.stdout
    assert result["max_sustained_rps"] is None
    assert [(s["offered_rps"], s["phase"]) for s in result["steps"]] == [(40, "grow"), (20, "descend"), (10, "descend")]


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
