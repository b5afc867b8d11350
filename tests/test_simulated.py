"""The simulated load itself (loadtest/simulated.py): each part of the Load protocol does in virtual
time what the real one does, exactly where the answer is known."""

import random

import numpy as np
import pytest

from llmcap.profile import SearchParams, Slo
from llmcap.rundir import ERROR_CODE
from loadtest.closed_loop import run_levels
from loadtest.search import run_step
from loadtest.simulated import Queue, Server, SimulatedLoad, fifo_fixed_starts, serve, simulate_search

SLO = Slo(p95_ms=500)


def fixed_step(load, rate_rps: float, seconds: float = 20.0) -> dict:
    return run_step(load, rate_rps, seconds, seconds, 2.0, SLO, 0.95, 30.0, 50.0)


def test_a_closed_loop_completes_n_over_the_service_time_up_to_the_slots():
    server = Server(4, 0.100, overhead_s=0.0)
    outcome = run_levels(SimulatedLoad(server), [2, 4, 8], 20.0, 2.0, SLO, 0.95, 30.0, 50.0)
    achieved = [s["achieved_rps"] for s in outcome.steps]
    assert achieved == pytest.approx([20.0, 40.0, 40.0], rel=0.02), achieved
    # past the slots the extra requests wait: latency doubles at 8 open on 4 slots
    assert outcome.steps[2]["p50_ms"] == pytest.approx(200.0, rel=0.02)


def test_an_open_loop_offers_poisson_arrivals_at_the_rate_set():
    load = SimulatedLoad(Server(16, 0.010), seed=3)
    step = fixed_step(load, 200.0, seconds=100.0)
    assert step["arrival_rps"] == pytest.approx(200.0, rel=0.03)  # 20,000 arrivals: 0.7 % at one sigma
    assert step["p50_ms"] == pytest.approx(14.0, abs=1.0)  # 10 ms service + 4 ms overhead, hardly any wait
    assert step["generator_cpu_percent"] == pytest.approx(200 * 0.5 / 10, rel=0.05)


def test_after_a_step_nothing_is_left_open_or_sent():
    load = SimulatedLoad(Server(2, 0.100), seed=1)
    fixed_step(load, 40.0, seconds=5.0)  # twice what 2 slots serve: a queue builds, then drains
    finished, open_scheduled, _ = load.step_so_far()
    assert len(open_scheduled) == 0 and max(load.end) <= load.clock.now()
    n = len(load.due)
    load.clock.sleep(10.0)
    load.step_so_far()
    assert len(load.due) == n  # rate 0: no more arrivals


def test_overload_refuses_past_the_queue_limit_and_times_out_the_rest():
    server = Server(1, 0.100, overhead_s=0.0, queue_limit=5, timeout_s=0.45)
    start, end, error = serve(np.arange(0.0, 1.0, 0.01), server)  # 100 arrivals in 1 s at 10/s capacity
    codes = set(error.tolist())
    assert codes == {0, ERROR_CODE["http_status"], ERROR_CODE["timeout"]}, codes
    timed_out = error == ERROR_CODE["timeout"]
    assert np.allclose(end[timed_out], np.arange(0.0, 1.0, 0.01)[timed_out] + 0.45)
    assert (end[error == 0] - np.arange(0.0, 1.0, 0.01)[error == 0] <= 0.45 + 1e-9).all()


@pytest.mark.parametrize("slots", [1, 4, 16])
def test_the_closed_form_of_a_fixed_service_queue_is_the_queue(slots):
    """fifo_fixed_starts (the true knees' fast path) against the queue it stands for, request by
    request, through a queue that builds and drains (rates from half to twice what the slots serve)."""
    rng = random.Random(slots)
    arrivals = np.cumsum([rng.expovariate(slots / 0.1 * rng.choice([0.5, 2.0])) for _ in range(20_000)])
    queue = Queue(Server(slots, 0.1), 0)
    starts = np.array([queue.admit(t)[0] for t in arrivals.tolist()])
    assert (starts > arrivals + 0.05).mean() > 0.03  # a queue did build (5-40 % waited)
    np.testing.assert_allclose(fifo_fixed_starts(arrivals, slots, 0.1), starts, rtol=0, atol=1e-9)


def test_a_wandering_server_changes_speed_by_the_minute_and_keeps_its_mean():
    server = Server(1, 0.1, wander_sd=0.088, seed=5)
    speeds = [server.speed(60.0 * k + 1) for k in range(2000)]
    assert server.speed(61.0) == server.speed(119.0) != server.speed(121.0)
    assert np.mean(speeds) == pytest.approx(1.0, abs=0.01) and np.std(np.log(speeds)) == pytest.approx(0.088, rel=0.05)


def test_the_same_seed_gives_the_same_search_to_the_bit():
    params, slo = SearchParams(start_rps=40), Slo(p95_ms=300)
    first, first_s = simulate_search(Server(16, 0.1), params, slo, seed=7)
    again, again_s = simulate_search(Server(16, 0.1), params, slo, seed=7)
    other, _ = simulate_search(Server(16, 0.1), params, slo, seed=8)
    assert repr(first.steps) == repr(again.steps) and first_s == again_s  # repr: NaN equals itself there
    assert repr(first.steps) != repr(other.steps)
