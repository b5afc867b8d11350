"""The rate search and the step verdict as pure functions over numbers."""

import math

import numpy as np
import pytest

from llmcap.confidence import FAIL, PASS
from llmcap.rundir import ERROR_CODE, SAMPLE_DTYPE
from loadtest.search import (
    BISECT,
    CONFIRM,
    DESCEND,
    GROW,
    RateSearch,
    SearchParams,
    knee_estimate,
    requests_to_pass,
    window_seconds,
)
from loadtest.stats import Slo, generator_check, hard_failure, look, summarize_window
from reports import report


def drive(capacity: float, params: SearchParams, lucky: set = frozenset()):
    """Run the search against an oracle: a rate passes iff it is <= capacity (or in `lucky`)."""
    s = RateSearch(params)
    trail = []
    while (nxt := s.next_step()) is not None:
        rate, phase = nxt
        passed = rate <= capacity or (rate in lucky and phase != CONFIRM)
        trail.append((round(rate, 4), phase, passed))
        s.record(rate, phase, passed)
    return s, trail


def test_grow_bisect_confirm():
    s, trail = drive(37.0, SearchParams(start_rps=5, growth=2, precision=0.03))
    assert [t[1] for t in trail[:4]] == [GROW] * 4 and [t[0] for t in trail[:4]] == [5, 10, 20, 40]
    assert trail[4] == (30.0, BISECT, True)
    assert trail[-1][1] == CONFIRM and trail[-1][2]
    assert s.confirmed
    assert s.best_rps <= 37.0 and (s.first_failing_rps - s.best_rps) / s.best_rps <= 0.03
    assert s.first_failing_rps > 37.0


def test_failed_confirmation_searches_lower():
    # 36 passes its short step by luck but not the confirmation
    params = SearchParams(start_rps=9, growth=2, precision=0.03)
    s, trail = drive(33.0, params, lucky={36.0})
    confirms = [t for t in trail if t[1] == CONFIRM]
    assert confirms[0] == (36.0, CONFIRM, False)
    assert confirms[-1][2] and s.confirmed
    assert 33.0 * 0.97 <= s.best_rps <= 33.0


def test_start_rate_above_capacity_steps_down_then_bisects():
    # the profile's start rate is 8x the capacity: the search steps down, then bisects and confirms
    s, trail = drive(5.0, SearchParams(start_rps=40, growth=2, precision=0.03))
    assert trail[:4] == [(40, GROW, False), (20, DESCEND, False), (10, DESCEND, False), (5, DESCEND, True)]
    assert all(t[1] == BISECT for t in trail[4:-1]) and trail[-1] == (s.best_rps, CONFIRM, True)
    assert 5.0 * 0.97 <= s.best_rps <= 5.0 and (s.first_failing_rps - s.best_rps) / s.best_rps <= 0.03


def test_descent_stops_at_the_floor():
    s, trail = drive(0.001, SearchParams(start_rps=16, growth=2))  # default floor: start / 16
    assert [t[0] for t in trail] == [16, 8, 4, 2, 1] and not any(t[2] for t in trail)
    assert s.best_rps is None and s.next_step() is None
    s, trail = drive(0.001, SearchParams(start_rps=16, growth=2, min_rps=4))
    assert [t[0] for t in trail] == [16, 8, 4]


def test_failed_confirmation_of_the_only_pass_steps_down():
    params = SearchParams(start_rps=10, growth=2, precision=1.0)
    s, trail = drive(4.0, params, lucky={10.0})  # 10 passes its step by luck, fails its confirmation
    assert trail[:3] == [(10, GROW, True), (20, GROW, False), (10, CONFIRM, False)]
    assert trail[3] == (5, DESCEND, False) and s.confirmed and s.best_rps <= 4.0


def test_window_holds_enough_requests_at_low_rates():
    params = SearchParams(step_seconds=10, confirm_seconds=20, max_step_seconds=80, min_requests=20)
    slo = Slo(p95_ms=500)
    assert window_seconds(params, slo, 100, GROW) == (10, 80) and window_seconds(params, slo, 100, CONFIRM) == (20, 80)
    assert window_seconds(params, slo, 100, BISECT) == (20, 80)  # near the knee: twice as long
    assert window_seconds(params, slo, 0.2, DESCEND) == (40, 100)  # the longest holds the 20 a pass needs
    assert window_seconds(params, slo, 0.05, DESCEND) == (40, 320)  # each stretched at most 4x


def test_window_holds_the_requests_a_pass_needs():
    """By default the shortest window holds as many requests as a pass with none over the bound needs:
    (1 - c)^(1/n) must fall below 1 - q (86 for p95 at 98.75 % per look, 437 for p99)."""
    # 10, 20, 40, 80 s and the two looks past the longest (extra_looks): six, at 1 - 0.05/6 each
    params = SearchParams(step_seconds=10, max_step_seconds=80, confidence=0.95)
    assert requests_to_pass(Slo(p95_ms=500), 0.9875) == 86
    assert requests_to_pass(Slo(p95_ms=500, p99_ms=900), 0.9875) == 437
    fewest = requests_to_pass(Slo(p95_ms=500), 1 - 0.05 / 6)
    assert fewest == 94
    # two Poisson sigmas to spare: the count in a window falls short of its mean half the time
    assert window_seconds(params, Slo(p95_ms=500), 10, GROW)[0] == pytest.approx((fewest + 2 * math.sqrt(fewest)) / 10)
    assert window_seconds(params, Slo(p95_ms=500), 100, GROW)[0] == 10


def test_max_rps_caps_growth_and_is_confirmed():
    s, trail = drive(1000, SearchParams(start_rps=10, growth=3, max_rps=50))
    assert [t[0] for t in trail] == [10, 30, 50, 50] and trail[-1][1] == CONFIRM


def curve_steps(knee: float, rates: list, n: int = 20000, slope: float = 12.0, name="p95", allowed=0.05):
    """Steps whose fraction over the bound follows a logistic curve in log(rate) crossing `allowed`
    at `knee`, as a queue's does near its knee."""
    steps = []
    for rate in rates:
        logit = math.log(allowed / (1 - allowed)) + slope * math.log(rate / knee)
        over = round(n / (1 + math.exp(-logit)))
        exceedance = {"name": name, "allowed_fraction": allowed, "n": n, "over": over, "effective_n": n}
        steps.append({"offered_rps": rate, "exceedance": [exceedance]})
    return steps


def test_knee_estimate_finds_where_the_fraction_over_crosses_the_allowed():
    steps = curve_steps(16.7, [4, 8, 16, 24, 20, 18, 17, 16, 16])
    # the interval from the verdicts: 16 passed, 18 failed; the answer lies inside, at the crossing
    assert knee_estimate(steps, 16.0, 18.0).rps == pytest.approx(16.7, rel=0.005)
    # steps far from the knee (4 and 8 req/s: almost nothing over) are left out of the fit
    assert knee_estimate([*steps, *curve_steps(16.7, [4, 4, 4], slope=1.0)], 16.0, 18.0).rps == pytest.approx(
        16.7, rel=0.005
    )


def test_knee_estimate_weighs_a_step_by_its_independent_requests():
    """A step of 20,000 requests with 15 % over the bound, all in a few bursts (worth 100
    independent requests), beside steps of 2,000 that follow the curve: weighted by its requests it
    would outweigh them all and drag the answer to the interval's low end; weighted by its
    independent ones, the answer stays at the crossing."""
    steps = curve_steps(16.7, [15, 16, 17, 18], n=2000)
    burst = {"name": "p95", "allowed_fraction": 0.05, "n": 20000, "over": 3000, "effective_n": 100}
    estimate = knee_estimate([*steps, {"offered_rps": 16.5, "exceedance": [burst]}], 15.0, 18.0)
    assert estimate.rps == pytest.approx(16.7, rel=0.01) and estimate.steps == 5
    as_if_independent = {**burst, "effective_n": burst["n"]}
    assert knee_estimate([*steps, {"offered_rps": 16.5, "exceedance": [as_if_independent]}], 15.0, 18.0).rps < 15.5


def test_knee_estimate_stays_inside_the_interval_and_the_rates_measured():
    # the curve crosses past high, which failed: the answer is the highest rate measured under it
    assert knee_estimate(curve_steps(25.0, [14, 16, 18, 20]), 16.0, 18.0).rps == 16.0
    marginal_at_17 = [
        {**s, "decision": "marginal"} if s["offered_rps"] == 17 else s for s in curve_steps(25.0, [16, 17, 18])
    ]
    assert knee_estimate(marginal_at_17, 16.0, 18.0).rps == 17.0  # marginal held, past the rate that passed
    assert knee_estimate(curve_steps(12.0, [12, 14, 16, 18]), 16.0, 18.0).rps == 16.0  # below the rate that passed
    # no step failed with confidence: not past the highest rate measured
    assert knee_estimate(curve_steps(30.0, [16, 18, 20]), 16.0, None).rps == 20.0


def test_knee_estimate_never_passes_a_rate_the_table_counts_as_failed():
    """8 passed, 10 and 12 were marginal, nothing failed with confidence, and the line crosses at
    10.1 (an AVX2 CI run's fp32 search): the answer is held at 10, the marginal rate, and says so."""
    steps = [{**s, "decision": "pass" if s["offered_rps"] == 8 else "marginal"} for s in curve_steps(10.1, [8, 10, 12])]
    unheld = knee_estimate([{**s, "decision": "pass"} for s in steps], 8.0, None)
    assert unheld.rps == pytest.approx(10.1, rel=0.005) and not unheld.at_marginal  # the line itself
    held = knee_estimate(steps, 8.0, None)
    assert held.rps == 10.0 and held.at_marginal
    assert "whose step was undecided: held at it" in report.fit_text(held.as_dict())


def test_knee_estimate_never_answers_a_rate_that_failed():
    """A many-slot stub search (knee 154.25 req/s, seed 8 of
    results/search-accuracy-many-slots-20261130T221917Z.json): 160 failed 585 of 585 in 3.4 s,
    150 ended marginal with 3.9 % over in bursts, 145 and 147.5 passed with none over. The line
    crosses the allowed 5 % near 163; the answer is 150, the highest rate that held, not the 160
    that failed."""

    def step(rate, decision, over, n, effective_n):
        e = {"name": "p95", "allowed_fraction": 0.05, "n": n, "over": over, "effective_n": effective_n}
        return {"offered_rps": rate, "decision": decision, "exceedance": [e]}

    steps = [
        step(40.0, "pass", 0, 414, 414),
        step(80.0, "pass", 0, 818, 818),
        step(160.0, "fail", 585, 585, 82.8),
        step(120.0, "pass", 0, 2365, 2365),
        step(140.0, "pass", 0, 2829, 2829),
        step(150.0, "marginal", 232, 5937, 60.8),
        step(145.0, "pass", 0, 2931, 2931),
        step(147.5, "pass", 0, 2880, 2880),
        step(147.5, "pass", 0, 2893, 2893),
    ]
    estimate = knee_estimate(steps, 147.5, 160.0)
    assert estimate.fitted and estimate.rps == 150.0


def test_knee_estimate_takes_the_strictest_bound():
    p95 = curve_steps(17.5, [15, 16, 17, 18, 19])
    p99 = curve_steps(16.5, [15, 16, 17, 18, 19], name="p99", allowed=0.01)
    steps = [{**a, "exceedance": a["exceedance"] + b["exceedance"]} for a, b in zip(p95, p99, strict=True)]
    assert knee_estimate(steps, 16.0, 19.0).rps == pytest.approx(16.5, rel=0.005)


def test_knee_estimate_without_a_rising_fraction_is_the_rate_that_passed():
    assert knee_estimate(curve_steps(16.7, [16]), 16.0, 18.0).rps == 16.0  # one rate: no line
    falling = curve_steps(16.7, [16, 17, 18], slope=-12.0)
    assert knee_estimate(falling, 16.0, 18.0).rps == 16.0
    few = curve_steps(16.7, [16, 17, 18], n=9)  # too few requests a step to fit
    assert knee_estimate(few, 16.0, 18.0).rps == 16.0
    assert knee_estimate([], 16.0, None).rps == 16.0


@pytest.mark.parametrize(
    "bad", [dict(start_rps=0), dict(growth=1.0), dict(precision=0), dict(start_rps=4, min_rps=8), dict(min_requests=0)]
)
def test_bad_search_parameters(bad):
    with pytest.raises(ValueError):
        RateSearch(SearchParams(**bad))


def make_samples(
    n: int, rate: float, latency_s, error=None, ttft_s=0.05, lateness_s=0.0, queued=0, dispatch_lateness_s=0.0
):
    s = np.zeros(n, SAMPLE_DTYPE)
    s["scheduled_s"] = 1000 + np.arange(n) / rate
    s["issued_s"] = s["scheduled_s"] + dispatch_lateness_s
    s["sent_s"] = s["scheduled_s"] + lateness_s
    s["first_token_s"] = s["scheduled_s"] + ttft_s
    s["end_s"] = s["scheduled_s"] + latency_s
    s["status"] = 200
    s["error"] = 0 if error is None else error
    s["queued"] = queued
    s["prompt_tokens"] = 250
    s["completion_tokens"] = 30
    s["itl_count"] = 2
    itl = np.tile(np.array([10.0, 30.0], np.float32), n)
    return s, itl


def test_summary_numbers():
    latency = np.linspace(0.1, 1.1, 1000)  # 100..1100 ms, uniformly
    s, itl = make_samples(1000, 10.0, latency)
    summary = summarize_window(s, itl, 1000.0, 1100.0)
    assert summary["scheduled"] == 1000 and summary["failed"] == 0
    assert summary["arrival_rps"] == pytest.approx(10.0)
    assert summary["p50_ms"] == pytest.approx(600, abs=0.1)
    assert summary["p95_ms"] == pytest.approx(100 + 0.95 * 1000, abs=0.1)
    assert summary["ttft_p95_ms"] == pytest.approx(50)
    assert summary["itl_p50_ms"] == pytest.approx(20) and summary["itl_p95_ms"] == pytest.approx(30)
    assert summary["mean_prompt_tokens"] == 250 and summary["mean_completion_tokens"] == 30
    # completions that ended inside the window: those scheduled before 1100 - latency
    ended = ((s["end_s"] >= 1000) & (s["end_s"] < 1100)).sum()
    assert summary["achieved_rps"] == pytest.approx(ended / 100)


def test_window_selects_by_scheduled_time():
    s, itl = make_samples(100, 10.0, 0.2)
    summary = summarize_window(s, itl, 1002.0, 1005.0)
    assert summary["scheduled"] == 30


def settled_look(s, slo, start=1000.0, end=1020.0):
    return look(s, np.zeros(0), float("inf"), start, end, slo, 0.95)


def test_look_judges_each_bound_and_names_the_failing_one():
    s, itl = make_samples(200, 10.0, 0.3)
    assert settled_look(s, Slo(p95_ms=500)).decision == PASS
    over = settled_look(s, Slo(p95_ms=250))
    assert over.decision == FAIL and over.reason.startswith("p95: 200 of 200 over 250 ms")
    ttft = settled_look(s, Slo(p95_ms=500, ttft_p95_ms=10))
    assert ttft.decision == FAIL and ttft.reason.startswith("TTFT p95")
    assert [e.name for e in ttft.exceedances] == ["p95", "TTFT p95"]


def test_look_counts_requests_still_open_past_the_bound():
    """At a look, a request open longer than the bound is over it; one open for less is not judged yet."""
    done, _ = make_samples(100, 10.0, 0.3)  # due 1000.0 .. 1009.9, all finished
    open_scheduled = np.array([1009.0, 1009.5, 1010.2])  # open as of 1010.5: two past 500 ms, one not yet
    v = look(done, open_scheduled, 1010.5, 1000.0, 1020.0, Slo(p95_ms=500), 0.95)
    assert v.cut_s == pytest.approx(1010.0)
    (e,) = v.exceedances
    assert e.over == 2 and e.n == 100 + 2  # the finished due before 1010.0 (all 100), and the two late ones


def test_errors_and_a_growing_queue_fail_whatever_the_latency():
    errors = np.where(np.arange(200) % 10 == 0, ERROR_CODE["http_status"], 0)
    bad, itl = make_samples(200, 10.0, 0.3, error=errors)
    reason = hard_failure(summarize_window(bad, itl, 1000, 1020), Slo(p95_ms=500))
    assert "error rate 10.0%" in reason and "http_status" in reason
    ok, itl = make_samples(200, 10.0, 0.3)
    assert hard_failure(summarize_window(ok, itl, 1000, 1020), Slo(p95_ms=500)) is None


def test_growing_queue_fails_even_within_slo():
    # latency grows linearly: only half of the arrivals complete within the window
    s, itl = make_samples(200, 10.0, np.arange(200) * 0.05)
    summary = summarize_window(s, itl, 1000, 1020)
    assert "queue is growing" in hard_failure(summary, Slo(p95_ms=1e9))
    # and the look sees the latency climb toward a bound it would cross in one more window (0 -> 10 s
    # in this one against 15 s): no steady state; against 40 s the same climb is no concern yet
    assert settled_look(s, Slo(p95_ms=15_000)).rising
    assert not settled_look(s, Slo(p95_ms=40_000)).rising


def test_generator_self_check():
    s, itl = make_samples(200, 10.0, 0.3, lateness_s=0.2, dispatch_lateness_s=0.2)
    late = summarize_window(s, itl, 1000, 1020)
    bottleneck, warning = generator_check(late, 50, cpu_percent=95)
    assert "cannot keep the schedule" in bottleneck and warning is None
    # the same lateness with an idle load generator: the machine held it back; the verdict stands
    bottleneck, warning = generator_check(late, 50, cpu_percent=5)
    assert bottleneck is None and "held it back" in warning
    # every user busy, dispatcher on time, CPU to spare: the server holds too many requests (SLO judges)
    s, itl = make_samples(200, 10.0, 0.3, lateness_s=0.2, queued=1)
    busy_users = summarize_window(s, itl, 1000, 1020)
    assert generator_check(busy_users, 50, cpu_percent=10) == (None, None)
    assert "cannot keep the schedule" in generator_check(busy_users, 50, cpu_percent=97)[0]
    on_time, itl = make_samples(200, 10.0, 0.3, lateness_s=0.001)
    assert generator_check(summarize_window(on_time, itl, 1000, 1020), 50, cpu_percent=99) == (None, None)
    assert not math.isnan(late["lateness_p99_ms"])
