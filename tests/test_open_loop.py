"""The load generator offers the rate it says, open loop, and leaves readable samples."""

import json
import threading
import time

import numpy as np
import pytest

from llmcap.rundir import read_samples
from tests.conftest import run_locust

pytestmark = pytest.mark.realtime  # timing against the wall clock: run alone (scripts/test.sh)


def ks_exponential(gaps: np.ndarray, rate: float) -> float:
    x = np.sort(gaps)
    n = len(x)
    cdf = 1 - np.exp(-rate * x)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def test_poisson_rate_is_honoured(stub, tmp_path):
    stub.configure(first_delay_ms=100, chunks=10)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        "50",
        "--duration",
        "20",
        "--run-dir",
        str(tmp_path / "run"),
        "--max-concurrency",
        "100",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    samples, _ = read_samples(tmp_path / "run")
    assert stub.stats()["requests"] == len(samples)  # the server saw every send
    step = json.loads((tmp_path / "run" / "result.json").read_text())["steps"][0]
    assert step["end"] - step["start"] == 20
    in_window = samples[(samples["scheduled_s"] >= step["start"]) & (samples["scheduled_s"] < step["end"])]
    sends = len(in_window)
    assert abs(sends - 1000) <= 4 * np.sqrt(1000), sends  # a Poisson count: 4 sigma
    gaps = np.diff(np.sort(samples["sent_s"]))
    cv = gaps.std() / gaps.mean()
    assert 0.9 <= cv <= 1.1, cv  # exponential gaps: coefficient of variation 1
    # the schedule is a Poisson process (KS at 0.1 %), and the sends keep to it to within milliseconds.
    # The KS test is not put to the send times: sends ~1 ms late apiece reshape exactly the gaps under a
    # millisecond (5 % of all at 50 req/s), and a fresh-clone run here measured 0.0518 against the 1 %
    # limit 0.0512 while its schedule's distance was 0.020 and p99 lateness 2.7 ms
    scheduled_gaps = np.diff(np.sort(samples["scheduled_s"]))
    assert ks_exponential(scheduled_gaps, 50.0) < 1.95 / np.sqrt(len(scheduled_gaps)), "schedule not Poisson"
    lateness_ms = (samples["sent_s"] - samples["scheduled_s"]) * 1000
    assert np.percentile(lateness_ms, 99) < 20


def test_constant_rate_is_exact(stub, tmp_path):
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        "40",
        "--duration",
        "5",
        "--arrival",
        "constant",
        "--run-dir",
        str(tmp_path / "run"),
        "--max-concurrency",
        "50",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    samples, _ = read_samples(tmp_path / "run")
    scheduled = np.sort(samples["scheduled_s"])
    assert 195 <= len(scheduled) <= 205
    assert np.allclose(np.diff(scheduled), 1 / 40, atol=1e-6)
    sent_gaps = np.diff(np.sort(samples["sent_s"]))
    assert np.median(np.abs(sent_gaps - 0.025)) < 0.002


def test_send_rate_does_not_drop_when_the_server_slows(stub, tmp_path):
    """Open loop: latency 50 ms -> 2 s mid-run; a closed-loop tool would halve its rate or worse."""
    stub.configure(first_delay_ms=50, chunks=5)
    timer = threading.Timer(7.0, lambda: stub.configure(first_delay_ms=2000))
    timer.start()
    t0 = time.time()
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        "20",
        "--duration",
        "14",
        "--run-dir",
        str(tmp_path / "run"),
        "--max-concurrency",
        "200",
    )
    timer.cancel()
    assert run.returncode == 3, run.stderr[-2000:]  # half its requests took 2 s: the SLO failed
    arrivals = np.array(stub.stats()["arrivals"])
    start = arrivals.min()
    before = ((arrivals >= start + 1) & (arrivals < start + 6)).sum()
    after = ((arrivals >= start + 8) & (arrivals < start + 13)).sum()
    assert after >= 0.85 * before, (before, after)
    samples, _ = read_samples(tmp_path / "run")
    slow = samples[samples["scheduled_s"] > t0 + 9]
    assert np.median(slow["end_s"] - slow["scheduled_s"]) > 1.9  # the slowdown did happen


def test_locust_cli_fixed_rate_leaves_a_run_directory(stub, tmp_path):
    run_dir = tmp_path / "run"
    run = run_locust("loadtest/text2sql.py", stub.url, "--rps", "20", "--duration", "10", "--run-dir", str(run_dir))
    assert run.returncode == 0, run.stderr[-2000:]
    samples, itl = read_samples(run_dir)
    assert abs(len(samples) - 200) <= 4 * np.sqrt(200)  # a Poisson count: 4 sigma
    assert (samples["error"] == 0).all()
    assert (samples["completion_tokens"] == 30).all()
    assert len(itl) == 29 * len(samples)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["mode"] == "fixed" and len(result["steps"]) == 1
    assert "achieved" in run.stdout and "lateness p99" in run.stdout  # the once-a-second line


def test_a_decided_step_leaves_no_backlog_for_the_next():
    """Tickets issued while every user was busy wait for one; once a step is decided they are
    dropped unsent, not fed into the next step (on the CPU engine an overload's backlog of hundreds
    once made every following step fail within a second, down to a quarter of the capacity)."""
    import gevent

    from loadtest.arrivals import Dispatcher
    from loadtest.process import LoadProcess

    dispatcher = Dispatcher("poisson", seed=1)
    process = LoadProcess(dispatcher, deliver=lambda batch: None)
    dispatcher.start()
    dispatcher.set_rate(500)
    gevent.sleep(0.2)  # no user takes any: all of them wait
    dispatcher.set_rate(0)
    issued = dispatcher.issued
    assert issued > 40 and dispatcher.tickets.qsize() == issued and len(process.open) == issued
    assert process.discard_queued() == issued
    assert dispatcher.tickets.qsize() == 0 and not process.open
    dispatcher.stop()
