"""The SLO-driven search for the maximum sustained request rate.

Grow the offered rate geometrically from `start_rps` until a step fails the SLO,
bisect between the last passing and the first failing rate until they are within
`precision` of each other, then hold the best passing rate for a longer
confirmation step. A failed confirmation makes that rate the new failing bound
and the bisection goes on below it. The start rate is a hint, not a precondition:
when it fails, the rate steps down (divided by `growth`) until a step passes or
the floor `min_rps` fails too, and only then is there "no capacity".

A step passes or fails only with `confidence` (loadtest/stats.py: look). It measures
until that is decided: a clear failure stops it within seconds, a clear pass at its
shortest window, an undecided step measures on to `max_step_seconds` and is then
"marginal", which the search counts as a failure. The interval on the maximum is the
highest rate that passed and the lowest that failed, each with confidence; the answer
inside it (`knee_estimate`) is where the fraction of requests over each bound, from
every step near the knee, crosses the fraction the bound allows.

`RateSearch` is the pure decision logic (rates in, verdicts in, next rate out);
`run_search` drives a `Load` (anything with set_rate / step_so_far / wait_settled /
drain / window, and the clock it runs on) through the steps: the real one over Locust
(loadtest/controller.py) or a simulated one in virtual time (loadtest/simulated.py).
docs/statistics.md explains the statistics.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from llmcap.confidence import FAIL, PASS, SEARCH_INTERVAL_COVERAGE, UNDECIDED, Coverage, fewest_to_pass
from llmcap.profile import SearchParams
from loadtest.clock import Clock
from loadtest.stats import Slo, generator_check, hard_failure, look, summarize_window

GROW, DESCEND, BISECT, CONFIRM = "grow", "descend", "bisect", "confirm"
CLOSED = "closed"  # a closed-loop level (loadtest/closed_loop.py), not a step of the search
MARGINAL = "marginal"  # undecided at the longest window: counted as failed

# the floor of the descent when the profile names none: a start rate this far off is a wrong profile
DEFAULT_DESCENT = 16.0


class RateSearch:
    """Decides the next rate to try from the verdicts so far."""

    def __init__(self, params: SearchParams):
        if params.start_rps <= 0 or params.growth <= 1 or params.precision <= 0:
            raise ValueError("search needs start_rps > 0, growth > 1 and precision > 0")
        if params.min_rps is not None and not 0 < params.min_rps <= params.start_rps:
            raise ValueError(
                f"search needs 0 < min_rps <= start_rps (got min_rps {params.min_rps:g}, "
                f"start_rps {params.start_rps:g})"
            )
        if params.min_requests is not None and params.min_requests < 1:
            raise ValueError("search needs min_requests >= 1")
        if not 0.5 <= params.confidence < 1:
            raise ValueError(f"search needs 0.5 <= confidence < 1 (got {params.confidence:g})")
        if params.max_step_seconds < params.step_seconds:
            raise ValueError(
                f"search needs max_step_seconds >= step_seconds (got {params.max_step_seconds:g} < "
                f"{params.step_seconds:g})"
            )
        self.p = params
        self.passed: list[float] = []
        self.failed: list[float] = []
        self.confirmed = False
        self.steps = 0

    @property
    def floor_rps(self) -> float:
        return self.p.min_rps if self.p.min_rps else self.p.start_rps / DEFAULT_DESCENT

    @property
    def best_rps(self) -> float | None:
        """Highest passing rate below every failing one."""
        hi = self.first_failing_rps
        below = [r for r in self.passed if hi is None or r < hi]
        return max(below) if below else None

    @property
    def first_failing_rps(self) -> float | None:
        return min(self.failed) if self.failed else None

    def next_step(self) -> tuple[float, str] | None:
        """(rate, phase) to run next, or None when the search is over."""
        if self.steps >= self.p.max_steps:
            return None
        lo, hi = self.best_rps, self.first_failing_rps
        if lo is None:
            if hi is None:
                return self.p.start_rps, GROW
            lower = hi / self.p.growth
            if lower < self.floor_rps * (1 - 1e-9):
                return None  # even the floor failed: no capacity
            return lower, DESCEND
        if hi is None:
            if self.p.max_rps is not None and lo >= self.p.max_rps:
                return None if self.confirmed else (lo, CONFIRM)
            nxt = lo * self.p.growth
            return (min(nxt, self.p.max_rps) if self.p.max_rps else nxt), GROW
        if (hi - lo) / lo > self.p.precision:
            return (lo + hi) / 2, BISECT
        return None if self.confirmed else (lo, CONFIRM)

    def record(self, rate_rps: float, phase: str, passed: bool) -> None:
        self.steps += 1
        if phase == CONFIRM:
            if passed:
                self.confirmed = True
            else:
                # the short step was lucky: this rate is not sustained after all
                self.passed = [r for r in self.passed if r < rate_rps]
                self.failed.append(rate_rps)
            return
        (self.passed if passed else self.failed).append(rate_rps)


class Load(Protocol):
    @property
    def clock(self) -> Clock: ...  # the time every step reads and waits on (real, or virtual in a simulation)

    def set_rate(self, rate_rps: float) -> None: ...  # open loop (0 stops issuing, a closed loop too)
    def set_concurrency(self, n: int) -> None: ...  # closed loop: n requests kept open
    def discard_queued(self) -> None: ...  # drop tickets no user has taken (the pool was exhausted)
    def begin_step(self, window_start_s: float) -> None: ...
    def step_so_far(self):  # -> (finished samples, scheduled times of open requests, as of)
        ...
    def wait_settled(self, before_s: float, timeout_s: float) -> None: ...
    def drain(self, timeout_s: float) -> None: ...
    def window(self):  # -> (samples, itl)
        ...
    def cpu_percent(self, start_s: float, end_s: float) -> float: ...


@dataclasses.dataclass
class SearchOutcome:
    steps: list[dict]
    max_sustained_rps: float | None  # the answer: knee_estimate, inside the interval
    first_failing_rps: float | None
    confirmed: bool
    generator_bottleneck: str | None = None
    mode: str = "search"
    # where the true maximum lies: the highest rate that passed and the lowest that failed, each
    # decided with `confidence` (high None: no step failed with confidence)
    interval_low_rps: float | None = None
    interval_high_rps: float | None = None
    confidence: float | None = None
    fit: KneeEstimate | None = None  # how the answer was found inside the interval
    crossing: dict | None = None  # the estimator's fit (loadtest/estimate.py: Crossing), where it ran
    interval_coverage: Coverage = SEARCH_INTERVAL_COVERAGE  # what the interval's label says, as measured
    interval_ends: str = "verdicts"  # or the estimator's: "fitted" (its line), "located" (one chunk each)

    @property
    def interval(self) -> dict | None:
        if self.interval_low_rps is None:
            return None
        return {
            "low": self.interval_low_rps,
            "high": self.interval_high_rps,
            "confidence": self.confidence,  # each end's verdict, or the fit's nominal level
            "label": self.interval_coverage.label,
            "ends": self.interval_ends,
        }


NEAR_KNEE = (0.6, 1.4)  # the steps knee_estimate fits, as multiples of the interval's low end
MIN_REQUESTS_TO_FIT = 10  # a step cut shorter than this says little about its fraction over


@dataclasses.dataclass
class KneeEstimate:
    rps: float
    fitted: bool  # False: the answer is the interval's low end (too little to fit a line)
    steps: int  # the steps near the knee it rests on
    requests: int  # their requests (of the bound whose crossing is the answer)
    at_marginal: bool = False  # the line crossed at or past a marginal rate over the low end: held at it

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def knee_estimate(steps: list[dict], low_rps: float, high_rps: float | None) -> KneeEstimate:
    """The answer inside the interval [low_rps, high_rps]: the rate at which the fraction of
    requests over each latency bound reaches the fraction the bound allows (5 % for p95), the lowest
    over the bounds. Per bound, a weighted least-squares line through logit(fraction over) against
    log(rate), over every step between NEAR_KNEE times the low end (passed, failed and marginal
    alike), each weighted by the inverse of its logit's variance, n_eff p (1 - p), with n_eff its
    independent requests (effective_n: a step whose slow requests came in one burst says little,
    however many requests it held; weighted by all of them, such steps near the knee pulled the
    few-slot answers down to 13 % under it, benchmarks/README.md). The low end, a rate that passed,
    uses only which side of the bound a step fell; this uses how far, from every request measured
    near the knee, and so lands closer to the true maximum (benchmarks/README.md). Kept inside the
    interval, at or under the highest rate measured below `high_rps` that did not fail with
    confidence (passed or marginal): a line is not a measurement past its data; and at or under the
    lowest rate over the low end counted as failed (failed or marginal), which the report says it is.
    With too few steps, or fractions that do not rise with the rate, the answer is the low end."""
    measured = [s for s in steps if s.get("exceedance") and s.get("offered_rps")]
    near = [s for s in measured if NEAR_KNEE[0] * low_rps <= s["offered_rps"] <= NEAR_KNEE[1] * low_rps]
    # a line past the rates that held is a guess: a stub search once crossed at 163 with 160 failed
    # 585 of 585 and 150 marginal at 3.9 % over, and reported the failed 160 as its answer
    held = [
        s["offered_rps"]
        for s in measured
        if s.get("decision") != FAIL and (high_rps is None or s["offered_rps"] < high_rps)
    ]
    ceiling = max(held, default=low_rps)
    # nor past a rate the table counts as failed, a marginal one included: the answer would contradict it
    counted_failed = [s["offered_rps"] for s in measured if s.get("decision") in (FAIL, MARGINAL)]
    marginal_cap = min((r for r in counted_failed if r > low_rps), default=math.inf)
    ceiling = min(ceiling, marginal_cap)
    best = KneeEstimate(low_rps, False, 0, 0)
    for name in sorted({e["name"] for s in near for e in s["exceedance"]}):
        x, y, w, n = [], [], [], 0
        allowed = None
        for s in near:
            for e in s["exceedance"]:
                if e["name"] == name and e["n"] >= MIN_REQUESTS_TO_FIT:
                    p = (e["over"] + 0.5) / (e["n"] + 1)  # never 0 or 1: a logit needs both sides
                    x.append(math.log(s["offered_rps"]))
                    y.append(math.log(p / (1 - p)))
                    w.append(e["effective_n"] * p * (1 - p))
                    n += e["n"]
                    allowed = e["allowed_fraction"]
        if len(set(x)) < 2 or allowed is None:
            continue
        xa, ya, wa = np.array(x), np.array(y), np.array(w)
        xm, ym = np.average(xa, weights=wa), np.average(ya, weights=wa)
        slope = float((wa * (xa - xm) * (ya - ym)).sum() / (wa * (xa - xm) ** 2).sum())
        if slope <= 0:
            continue
        crossing = math.exp(xm + (math.log(allowed / (1 - allowed)) - ym) / slope)
        rps = max(low_rps, min(crossing, ceiling))
        if not best.fitted or rps < best.rps:
            best = KneeEstimate(rps, True, len(x), n, at_marginal=rps == marginal_cap)
    return best


def window_seconds(params: SearchParams, slo: Slo, rate_rps: float, phase: str) -> tuple[float, float]:
    """(minimum, maximum) measured window of a step. The minimum is the phase's length, stretched
    at low rates to hold the requests a pass needs (`requests_to_pass`, with two Poisson sigmas to
    spare, or `min_requests`); an undecided step measures on, up to the maximum, which also holds
    that many requests where the rate allows (and past which a step far under its bounds looks on:
    extra_looks)."""
    # near the knee (bisecting, confirming) a queue's slow swings need longer to show
    base = {CONFIRM: params.confirm_seconds, BISECT: 2 * params.step_seconds}.get(phase, params.step_seconds)
    if params.min_requests:
        needed = float(params.min_requests)
    else:
        looks = len(pass_looks(base, params.max_step_seconds)) + EXTRA_DOUBLINGS
        fewest = requests_to_pass(slo, look_confidence(params.confidence, looks))
        needed = fewest + 2 * math.sqrt(fewest)  # a Poisson count falls short of its mean half the time
    # at most 4x: a descent to a floor far below the start must not take hours
    shortest = max(base, min(needed / rate_rps, 4 * base))
    # the longest window too holds what a pass needs, else a low rate could only end 'marginal'
    # (up to 4x max_step_seconds: below that rate a pass is out of reach and the step fails)
    longest = max(shortest, params.max_step_seconds, min(needed / rate_rps, 4 * params.max_step_seconds))
    return shortest, longest


def requests_to_pass(slo: Slo, confidence: float) -> int:
    """The fewest requests that can pass the strictest bound: with none over it, the exact upper
    bound on the fraction over, 1 - (1 - confidence)^(1/n), must fall below the allowed fraction."""
    return fewest_to_pass(min(b.allowed_fraction for b in slo.latency_bounds()), confidence)


FAIL_LOOK_S = 2.0  # a step's first "failed yet?": an overload stops before its queue piles up
LATE_REPORT_S = 5.0  # a process silent this long past a look is not waited for (see Collector.STALE_S)


def pass_looks(min_s: float, max_s: float) -> list[float]:
    """When a step may pass, in seconds into its window: the minimum, then doubling, then the maximum.
    Few looks, because each one spends part of the error budget (see look_confidence)."""
    return _doubling(min_s, max_s)


def fail_looks(until_s: float, min_s: float | None = None) -> list[float]:
    """When a step asks "failed yet?", in seconds into its window: FAIL_LOOK_S, then doubling, then
    `until_s` (every request of the longest window known), and `min_s` when given (every request of
    the minimum window known: there a steady failure stops the step, see stops_now). Doubling, not
    every few seconds: each look spends part of the error budget, and a clear failure is clear at
    the first looks (an overload's open requests are over the bound at once), while a failure near
    the knee needs the evidence of a long window, which a stricter level per look would only delay."""
    looks = _doubling(FAIL_LOOK_S, until_s)
    if min_s is not None and min_s < until_s and all(abs(t - min_s) > 1e-9 for t in looks):
        looks = sorted(looks + [min_s])
    return looks


def _doubling(first_s: float, last_s: float) -> list[float]:
    looks = []
    t = first_s
    while t < last_s - 1e-9:
        looks.append(t)
        t *= 2
    return looks + [last_s]


def look_levels(confidence: float, passes: int, fails: int) -> tuple[float, float]:
    """(pass, fail) confidence level of each look of a step with `passes` pass looks (extra_looks
    included) and `fails` failure looks. A wrong pass is possible only where the truth is a failure
    and a wrong failure only where it is a pass, so each side spends the whole budget over its own
    looks; the failure side counts run_step's final look at the settled window too."""
    return look_confidence(confidence, passes), look_confidence(confidence, fails + 1)


def look_confidence(confidence: float, looks: int) -> float:
    """Each of `looks` looks is judged at this level, so that the chance of any wrong decision over
    all of them stays within 1 - confidence (Bonferroni: repeated looks at growing data would
    otherwise find a lucky moment)."""
    return 1.0 - (1.0 - confidence) / max(looks, 1)


def run_step(
    load: Load,
    rate_rps: float,
    min_s: float,
    max_s: float,
    warmup_s: float,
    slo: Slo,
    confidence: float,
    request_timeout_s: float,
    max_lateness_ms: float,
    phase: str = "fixed",
    on_tick: Callable[[dict], None] | None = None,
    concurrency: int | None = None,
) -> dict:
    """Offer `rate_rps` and measure until the verdict is decided (at least `min_s`, at most `max_s`
    seconds), wait for the window's requests, drain; return the step.

    A search step looks at `fail_looks` for a failure decided with confidence (and stops at
    once: no queue to drain later), and at `pass_looks` for a pass. Undecided at `max_s`, it is
    "marginal" and counts as failed. A fixed run (phase "fixed") measures exactly `max_s` and is
    judged once; so is a closed-loop level (phase CLOSED, `concurrency` requests kept open, the
    rate whatever the server makes of it: `rate_rps` is ignored and the step's offered rate is the
    one measured).
    """
    clock = load.clock
    started = clock.now()
    window_start = started + warmup_s
    load.begin_step(window_start)
    if concurrency is not None:
        load.set_concurrency(concurrency)
    else:
        load.set_rate(rate_rps)

    def tick(window_end: float) -> None:
        if on_tick is not None:
            info = {"phase": phase, "offered_rps": rate_rps, "started": started}
            on_tick({**info, "window_start": window_start, "window_end": window_end, "concurrency": concurrency})

    if phase in ("fixed", CLOSED):
        window_end = window_start + max_s
        while clock.now() < window_end:
            tick(window_end)
            clock.sleep(min(1.0, max(0.0, window_end - clock.now())))
        load.set_rate(0)  # a fixed run sends for exactly its duration
        verdict, used_confidence, stopped, looks = None, confidence, "fixed duration", 1
    else:
        verdict, used_confidence, stopped, looks = _sequential(load, window_start, min_s, max_s, slo, confidence, tick)
        window_end = verdict.cut_s
        if verdict.decision == FAIL:
            load.set_rate(0)  # decided: stop piling up a queue that would only have to drain
            load.discard_queued()  # and what the exhausted pool still holds: it would load the next step
    # a passing step keeps the load on while the window's last requests finish, as in production
    load.wait_settled(window_end, request_timeout_s + 10.0)
    load.set_rate(0)
    load.discard_queued()  # anything left was due after the window: not this step's, not the next's
    samples, itl = load.window()
    summary = summarize_window(samples, itl, window_start, window_end, slo)
    final = look(samples, np.zeros(0), float("inf"), window_start, window_end, slo, used_confidence)
    decision, reason = final.decision, final.reason
    if verdict is not None and verdict.decision == FAIL and decision != FAIL:
        # decided while requests were open, from those past the bound: the evidence stands
        decision, reason = FAIL, verdict.reason
    hard = hard_failure(summary, slo)
    if hard:
        decision, reason = FAIL, hard
    elif decision == UNDECIDED:
        decision = MARGINAL
        counted = "" if phase == "fixed" else ", counted as failed"  # a fixed run is no search step
        reason = f"undecided after {window_end - window_start:.0f} s{counted}: {final.reason}"
    cpu_percent = load.cpu_percent(window_start, window_end)
    bottleneck, warning = generator_check(summary, max_lateness_ms, cpu_percent)
    step = {
        "phase": phase,
        "offered_rps": rate_rps if concurrency is None else summary["arrival_rps"],
        **({"concurrency": concurrency} if concurrency is not None else {}),
        **summary,
        "passed": decision == PASS and bottleneck is None,
        "decision": decision,
        "reason": bottleneck or reason,
        "stopped": stopped,
        "measured_s": window_end - window_start,
        "looks": looks,
        "confidence": used_confidence,
        "exceedance": [e.as_dict() for e in final.exceedances],
        "generator_bottleneck": bottleneck is not None,
        "warmup_start": started,
        "generator_cpu_percent": cpu_percent,
        "warning": warning,
    }
    load.drain(request_timeout_s + 10.0)
    return step


def _sequential(load: Load, window_start: float, min_s: float, max_s: float, slo: Slo, confidence: float, tick):
    """Look until decided: for a failure at `fail_looks`, for a pass when the requests due in the
    next of `pass_looks` are all known; an undecided step far under every bound at its longest
    window looks on at `extra_looks` (see far_under). Returns (verdict, its confidence level, why it
    stopped, looks); the verdict's `cut_s` ends the measured window."""
    passes = pass_looks(min_s, max_s)
    extra = extra_looks(max_s)
    # a request's side of every bound is known this long after it was due
    known_after_s = max(b.limit_ms for b in slo.latency_bounds()) / 1000.0
    # failure looks judge the longest window's requests; past it they would only repeat themselves
    fails = fail_looks(max_s + known_after_s, min_s + known_after_s)
    pass_confidence, fail_confidence = look_levels(confidence, len(passes) + len(extra), len(fails))
    looks = 0
    clock = load.clock
    while True:
        window_end = window_start + passes[0]
        tick(window_end)
        t = clock.now()
        if fails and t >= window_start + fails[0]:
            fails = [f for f in fails if window_start + f > t]  # one look for any that came due meanwhile
            finished, open_scheduled, as_of = load.step_so_far()
            looks += 1
            failing = look(finished, open_scheduled, as_of, window_start, window_start + max_s, slo, fail_confidence)
            if stops_now(failing, failing.cut_s - window_start, min_s):
                return failing, fail_confidence, "decided", looks
        if t >= window_end + known_after_s:
            finished, open_scheduled, as_of = load.step_so_far()
            # every process must have reported past the window (its batches lag by up to FLUSH_S)
            if as_of >= window_end + known_after_s or t > window_end + known_after_s + LATE_REPORT_S:
                looks += 1
                verdict = look(finished, open_scheduled, as_of, window_start, window_end, slo, pass_confidence)
                if verdict.decision == PASS:
                    return verdict, pass_confidence, "decided", looks
                if len(passes) == 1:
                    if extra and far_under(verdict):
                        passes = [extra.pop(0)]
                        continue
                    return verdict, pass_confidence, "max duration", looks
                passes.pop(0)
                continue
        wake = min(window_start + (fails[0] if fails else math.inf), window_start + passes[0] + known_after_s)
        clock.sleep(min(1.0, max(0.1, wake - clock.now())))


def stops_now(failing, judged_s: float, min_s: float) -> bool:
    """Whether a failure look's verdict, on `judged_s` seconds of the window, stops the step. Judged
    on less than the minimum window, a failure stops it only when it is an overload (a queue
    building, requests failing: see look), the case the early looks exist for, since every second
    more of it is queue to drain. Over the bound but steady, a short window cannot tell a server
    that is slow at this rate from a slow spell of the machine (the CPU demo once failed bf16 at
    4 req/s on 7 of 8 requests in 3 s, then 1 req/s on 6 of 6, and ended with no capacity): it
    costs no queue to measure on, and the slices of a minimum window are long enough to see a
    spell as one."""
    return failing.decision == FAIL and (failing.overload or judged_s >= min_s - 1e-6)


EXTRA_DOUBLINGS = 2  # an undecided step far under its bounds measures on, to 4x its longest window


def extra_looks(max_s: float) -> list[float]:
    """Pass looks past the longest window, taken only by a step far under every bound (far_under).
    Declared in advance, so each look's share of the error budget counts them whether they are
    taken or not: stopping on what the data show cannot find a lucky moment beyond that budget."""
    return [max_s * 2**k for k in range(1, EXTRA_DOUBLINGS + 1)]


def far_under(verdict) -> bool:
    """Undecided only for want of independent evidence: every bound's fraction over it at most half
    the allowed, latency not rising. A queue whose slow spells are long (few independent clusters
    in the window) is here, far under the bound; a step at the knee is not."""
    return not verdict.rising and all(e.n > 0 and e.fraction <= e.allowed_fraction / 2 for e in verdict.exceedances)


def run_search(
    load: Load,
    params: SearchParams,
    slo: Slo,
    request_timeout_s: float,
    on_step: Callable[[dict], None] = lambda step: None,
    on_tick: Callable[[dict], None] | None = None,
) -> SearchOutcome:
    search = RateSearch(params)
    steps: list[dict] = []

    def outcome(bottleneck: str | None = None) -> SearchOutcome:
        # a bottlenecked run reports what passed so far; a finished search only a confirmed rate
        best = search.best_rps if (search.confirmed or bottleneck) else None
        failed = [
            s["offered_rps"] for s in steps if s.get("decision") == FAIL and (best is None or s["offered_rps"] > best)
        ]
        high = min(failed) if failed else None
        # a bottlenecked run has no server verdict past what passed: nothing to fit
        fit = knee_estimate(steps, best, high) if best is not None and not bottleneck else None
        return SearchOutcome(
            steps,
            fit.rps if fit else best,
            search.first_failing_rps,
            search.confirmed,
            generator_bottleneck=bottleneck,
            interval_low_rps=best,
            interval_high_rps=high,
            confidence=params.confidence,
            fit=fit,
        )

    while (nxt := search.next_step()) is not None:
        rate, phase = nxt
        min_s, max_s = window_seconds(params, slo, rate, phase)
        step = run_step(
            load,
            rate,
            min_s,
            max_s,
            params.warmup_seconds,
            slo,
            params.confidence,
            request_timeout_s,
            params.max_lateness_ms,
            phase,
            on_tick,
        )
        step["index"] = len(steps)
        steps.append(step)
        on_step(step)
        if step["generator_bottleneck"]:
            return outcome(bottleneck=step["reason"])
        search.record(rate, phase, step["passed"])
    return outcome()
