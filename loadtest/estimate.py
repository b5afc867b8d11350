"""Capacity as an estimate: the rate at which the fraction of requests over a latency bound
crosses the fraction the bound allows, fitted across back-to-back chunks of load.

`fit_crossing` is the statistics (pure: counts in, an estimate with its interval out);
`run_estimate` drives a search `Load` (loadtest/search.py) through the chunks:

1. locate: one chunk per rate, from `start_rps` up by `growth` (down, if the first is over),
   until a chunk's fraction over some bound exceeds the allowed one;
2. estimate: chunks at rates just under and over the fitted crossing, without draining in
   between (a settling time is discarded after each change of rate), until the interval is
   narrower than `interval_half_width` or the time budget `max_search_seconds` ends.

An overload (a queue building, requests failing) stops its chunk within seconds and drains,
as a failed step does. docs/statistics.md explains the model and its calibration.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np

from llmcap.confidence import ESTIMATE_INTERVAL_COVERAGE, FAIL, PASS, UNDECIDED, t_quantile
from llmcap.profile import SearchParams, Slo
from loadtest.search import MARGINAL, Load, SearchOutcome, fail_looks, look_confidence
from loadtest.stats import generator_check, hard_failure, look, summarize_window

MIN_CHUNKS = 3  # a line and its scatter about it need at least one degree of freedom
FIT_SPAN = 1.25  # chunks within this factor of the estimate are fitted (a logit line is local)


@dataclasses.dataclass(frozen=True)
class Crossing:
    """Where the fitted fraction over one bound reaches its allowed fraction."""

    bound: str
    rps: float
    low_rps: float  # the interval at `confidence`, nominal (its coverage is measured in simulation)
    high_rps: float  # inf: the data bound it only from below
    chunks: int
    requests: int
    slope: float  # d logit(fraction over) / d log(rate)
    dispersion: float  # the chunks' scatter about the line, as a multiple of the binomial's (>= 1)
    effective_requests: float  # requests / dispersion: the independent observations it rests on

    @property
    def half_width(self) -> float:
        """The interval's relative half-width, (high - low) / 2 / estimate."""
        return (self.high_rps - self.low_rps) / 2 / self.rps

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def fit_crossing(
    bound: str,
    rates_rps: np.ndarray,
    n: np.ndarray,
    over: np.ndarray,
    allowed_fraction: float,
    confidence: float,
    effective_n: np.ndarray | None = None,
) -> Crossing | None:
    """A logistic regression of each chunk's fraction over on log(rate) with extra-binomial
    variation: a chunk of n requests counts as 1 / (1 + rho (n - 1)) of them, rho chosen so the
    chunks' Pearson scatter about the line equals its degrees of freedom (Williams 1982, "Extra-
    binomial variation in logistic linear models", Applied Statistics 31: rho 0 is a binomial, rho
    1 a chunk whose requests are all over or none, one observation however many it held). Fitted
    with Firth's penalty, which keeps the slope finite when no chunk lies between none and all over
    (Firth 1993, Biometrika 80); the crossing's interval by Fieller's theorem with a t quantile on
    chunks - 2 degrees of freedom (Finney 1971, Probit Analysis). None when the fraction does not
    rise with the rate or fewer than MIN_CHUNKS chunks at two rates hold it."""
    keep = n > 0
    rates, trials, successes = rates_rps[keep], n[keep].astype(float), over[keep].astype(float)
    # each chunk counts at most the independent requests its own clusters show (a queue's excursion
    # is one event however many requests it holds): the scatter alone cannot see that when no chunk
    # lies between none and all over
    cap = np.minimum(effective_n[keep], trials) / trials if effective_n is not None else np.ones(len(trials))
    cap = _uniform_chunks_share(cap, trials, successes)
    k = len(rates)
    if k < MIN_CHUNKS or len(np.unique(rates)) < 2:
        return None
    x0 = float(np.exp(np.average(np.log(rates), weights=trials)))  # centred: a and b nearly independent
    design = np.stack([np.ones(k), np.log(rates / x0)], axis=1)
    rho, fitted = _williams(design, trials, successes, cap)
    if fitted is None or fitted[0][1] <= 0:
        return None
    (a, b), information = fitted
    target = math.log(allowed_fraction / (1 - allowed_fraction))
    t = t_quantile(1 - (1 - confidence) / 2, k - 2)
    low, high = _fieller(a, b, target, np.linalg.inv(information), t)
    low, high = _span_a_gap(rates / x0, trials, successes, low, high)
    total = int(trials.sum())
    effective = float((trials * np.minimum(1 / (1 + rho * (trials - 1)), cap)).sum())
    return Crossing(
        bound,
        x0 * _exp((target - a) / b),
        x0 * _exp(low),
        x0 * _exp(high),
        k,
        total,
        float(b),
        total / effective,
        effective,
    )


def _uniform_chunks_share(cap: np.ndarray, trials: np.ndarray, successes: np.ndarray) -> np.ndarray:
    """A chunk with none or all over shows no clusters, so it cannot show its own correlation:
    it counts no more than the most clustered chunk that could (the same queue made both)."""
    uniform = (successes == 0) | (successes == trials)
    if uniform.all() or not uniform.any():
        return cap
    return np.where(uniform, np.minimum(cap, cap[~uniform].min()), cap)


def _span_a_gap(x: np.ndarray, trials: np.ndarray, successes: np.ndarray, low: float, high: float):
    """(low, high) in log(x), widened to the gap between the highest rate with none over and the
    lowest with all over when no chunk lies between: such data place the crossing in the gap and
    no closer, whatever slope the penalty gives the line."""
    none, every = successes == 0, successes == trials
    if not np.all(none | every) or not none.any() or not every.any():
        return low, high
    gap_low, gap_high = float(np.log(x[none].max())), float(np.log(x[every].min()))
    return (min(low, gap_low), max(high, gap_high)) if gap_low < gap_high else (low, high)


def _williams(design: np.ndarray, trials: np.ndarray, successes: np.ndarray, cap: np.ndarray):
    """(rho, the Firth fit with each chunk weighted min(1 / (1 + rho (n - 1)), cap)): rho by
    bisection on Pearson's X^2 = k - 2; 0 where the capped weights already scatter as much."""

    def fit(rho: float):
        weight = np.minimum(1.0 / (1.0 + rho * (trials - 1)), cap)
        fitted = _firth(design, trials * weight, successes * weight)
        if fitted is None:
            return None, math.inf
        mu = _expit(design @ fitted[0])
        scatter = weight * (successes - trials * mu) ** 2 / np.maximum(trials * mu * (1 - mu), 1e-12)
        return fitted, float(scatter.sum())

    dof = len(trials) - 2
    fitted, pearson = fit(0.0)
    if fitted is None or pearson <= dof:
        return 0.0, fitted
    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if fit(mid)[1] > dof else (low, mid)
    return high, fit(high)[0]


def _exp(x: float) -> float:
    """e^x, inf past what a float holds (a bound that far out bounds nothing)."""
    return math.exp(x) if x < 700 else math.inf


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _firth(
    design: np.ndarray, trials: np.ndarray, successes: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray] | None:
    """(coefficients, Fisher information) of the binomial logit with Firth's penalty: each
    iteration a weighted least-squares step on the counts plus half of each chunk's leverage as
    successes and all of it as trials (Heinze & Schemper 2002, Statistics in Medicine 21). None:
    no convergence or a singular information."""
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        mu = _expit(np.clip(design @ beta, -30.0, 30.0))
        w = np.maximum(trials * mu * (1 - mu), 1e-12)
        information = design.T @ (w[:, None] * design)
        try:
            inverse = np.linalg.inv(information)
        except np.linalg.LinAlgError:
            return None
        leverage = w * np.einsum("ij,jk,ik->i", design, inverse, design)
        score = design.T @ (successes + leverage / 2 - (trials + leverage) * mu)
        step = inverse @ score
        step *= min(1.0, 5.0 / max(float(np.abs(step).max()), 1e-12))  # no leap past the optimum
        beta = beta + step
        if not np.all(np.isfinite(beta)):
            return None
        if np.abs(step).max() < 1e-9:
            return beta, information
    return None


def _fieller(a: float, b: float, target: float, cov: np.ndarray, t: float) -> tuple[float, float]:
    """The (low, high) x at which a + b x = target cannot be rejected at t: the roots of
    (a + b x - target)^2 = t^2 var(a + b x). With the slope itself not clearly positive the set is
    unbounded above (inf) or everything (-inf, inf)."""
    va, vab, vb = cov[0, 0], cov[0, 1], cov[1, 1]
    d = a - target
    qa, qb, qc = b * b - t * t * vb, 2 * (b * d - t * t * vab), d * d - t * t * va
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return -math.inf, math.inf
    root = math.sqrt(disc)
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


# -- the search ---------------------------------------------------------------------------------

LOCATE, ESTIMATE = "locate", "estimate"
DESIGN_SPREAD = 0.05  # estimate chunks lie this far under and over the fitted crossing
CHUNKS_PER_RATE = 2  # half the rate changes of one each, so half the settling time lost


def fit_knee(chunks: list[dict], confidence: float, from_rps: float, to_rps: float = math.inf) -> Crossing | None:
    """The lowest crossing over the SLO's bounds, fitted on the chunks that measured a steady
    state (no overload) at rates in [from_rps, to_rps]."""
    steady = [c for c in chunks if c["exceedance"] and not c["overload"] and from_rps <= c["offered_rps"] <= to_rps]
    best = None
    for name in dict.fromkeys(e["name"] for c in steady for e in c["exceedance"]):
        rows = [(c["offered_rps"], e) for c in steady for e in c["exceedance"] if e["name"] == name]
        rates = np.array([r for r, _ in rows])
        n, over = np.array([e["n"] for _, e in rows]), np.array([e["over"] for _, e in rows])
        effective = np.array([e["effective_n"] for _, e in rows])
        crossing = fit_crossing(name, rates, n, over, rows[0][1]["allowed_fraction"], confidence, effective)
        if crossing is not None and (best is None or crossing.rps < best.rps):
            best = crossing
    return best


def refit(chunks: list[dict], confidence: float, from_rps: float) -> Crossing | None:
    """fit_knee on the chunks from `from_rps` up; then, where enough of them lie there, on those
    within FIT_SPAN of that crossing: a logit line is local."""
    wide = fit_knee(chunks, confidence, from_rps)
    if wide is None:
        return None
    near = fit_knee(chunks, confidence, wide.rps / FIT_SPAN, wide.rps * FIT_SPAN)
    return near if near is not None else wide


# the scatter of fewer chunks near the crossing is too often small by chance (simulated many-slot
# searches stopped after 4 with intervals a third as wide as their errors)
MIN_ESTIMATE_CHUNKS = 8


def overload_ceiling(chunks: list[dict]) -> float:
    """The lowest rate that overloaded: no answer lies above it."""
    return min((c["offered_rps"] for c in chunks if c["overload"]), default=math.inf)


def consistent(fit: Crossing, ceiling: float) -> bool:
    """Whether a fitted interval bounds the crossing from below, under every rate that overloaded
    (a server whose speed wanders can overload at a rate a later line puts under the crossing)."""
    return 0 < fit.low_rps < ceiling


def over_allowed(chunk: dict) -> bool:
    """Whether a chunk measured more over some bound than it allows (a point estimate: locating
    needs no confidence) or failed outright."""
    return chunk["overload"] or any(e["n"] and e["over"] > e["allowed_fraction"] * e["n"] for e in chunk["exceedance"])


def run_chunk(
    load: Load,
    rate_rps: float,
    settle_s: float,
    chunk_s: float,
    slo: Slo,
    params: SearchParams,
    request_timeout_s: float,
    phase: str,
    change_rate: bool,
    on_tick: Callable[[dict], None] | None = None,
) -> dict:
    """Offer `rate_rps` (already offered: `change_rate` False, nothing settles) and measure the
    requests due in the `chunk_s` after `settle_s`. The load stays on, unless the chunk was an
    overload (stopped at the first failure look that found one, then drained)."""
    clock = load.clock
    started = clock.now()
    window_start = started + settle_s
    window_end = window_start + chunk_s
    load.begin_step(window_start)
    if change_rate:
        load.set_rate(rate_rps)
    known_after_s = max(b.limit_ms for b in slo.latency_bounds()) / 1000.0
    # near the crossing a chunk is never cut short: cut at its worst, the fitted fraction would be
    # the fraction of the chunks that were not (an excursion of the queue looks like an overload)
    looks = fail_looks(chunk_s + known_after_s) if phase == LOCATE else [chunk_s + known_after_s]
    fail_confidence = look_confidence(params.confidence, len(looks))
    overload = False
    for at_s in looks:
        while clock.now() < window_start + at_s:
            if on_tick is not None:
                tick = {"phase": phase, "offered_rps": rate_rps, "started": started, "concurrency": None}
                on_tick({**tick, "window_start": window_start, "window_end": window_end})
            clock.sleep(min(1.0, window_start + at_s - clock.now()))
        finished, open_scheduled, as_of = load.step_so_far()
        failing = look(finished, open_scheduled, as_of, window_start, window_end, slo, fail_confidence)
        if failing.decision == FAIL and failing.overload:
            overload, window_end = True, max(failing.cut_s, window_start + 1e-3)
            break
    if overload:
        load.set_rate(0)
        load.discard_queued()
    load.wait_settled(window_end, request_timeout_s + 10.0)
    samples, itl = load.window()
    summary = summarize_window(samples, itl, window_start, window_end, slo)
    final = look(samples, np.zeros(0), math.inf, window_start, window_end, slo, params.confidence)
    hard = "overload: " + failing.reason if overload else hard_failure(summary, slo)
    if phase == ESTIMATE and summary["error_rate"] <= slo.max_error_rate:
        hard = None  # a queue that grew for a chunk is the excursion the fit must see, not an overload
    cpu_percent = load.cpu_percent(window_start, window_end)
    bottleneck, warning = generator_check(summary, params.max_lateness_ms, cpu_percent)
    step = {
        "phase": phase,
        "offered_rps": rate_rps,
        **summary,
        "passed": not hard and final.decision == PASS and bottleneck is None,  # this chunk's own verdict
        "decision": FAIL if hard else MARGINAL if final.decision == UNDECIDED else final.decision,
        "reason": bottleneck or hard or final.reason,
        "overload": hard is not None,
        "stopped": "overload" if overload else "chunk",
        "measured_s": window_end - window_start,
        "looks": len(looks),
        "confidence": params.confidence,
        "exceedance": [e.as_dict() for e in final.exceedances],
        "generator_bottleneck": bottleneck is not None,
        "warmup_start": started,
        "generator_cpu_percent": cpu_percent,
        "warning": warning,
    }
    if step["overload"]:
        load.set_rate(0)
        load.discard_queued()
        load.drain(request_timeout_s + 10.0)
    return step


def run_estimate(
    load: Load,
    params: SearchParams,
    slo: Slo,
    request_timeout_s: float,
    on_step: Callable[[dict], None] = lambda step: None,
    on_tick: Callable[[dict], None] | None = None,
) -> SearchOutcome:
    """Locate the crossing, then estimate it (see the module's docstring)."""
    clock = load.clock
    deadline = clock.now() + params.max_search_seconds
    chunks: list[dict] = []
    offered = 0.0  # what the generator offers now (0: stopped)

    def measure(rate_rps: float, phase: str) -> dict:
        nonlocal offered
        if params.max_rps is not None:
            rate_rps = min(rate_rps, params.max_rps)
        settle_s = 0.0 if rate_rps == offered else params.warmup_seconds * (2 if rate_rps < offered else 1)
        step = run_chunk(
            load, rate_rps, settle_s, params.step_seconds, slo, params, request_timeout_s, phase,
            change_rate=rate_rps != offered, on_tick=on_tick,
        )  # fmt: skip
        offered = 0.0 if step["stopped"] == "overload" else rate_rps  # stopped: nothing is offered now
        step["index"] = len(chunks)
        chunks.append(step)
        on_step(step)
        return step

    def more() -> bool:
        return len(chunks) < params.max_steps and clock.now() < deadline

    low, high = locate(measure, params, more)
    if chunks and chunks[-1]["generator_bottleneck"]:
        return _outcome(chunks, params, low, high, converged=False, bottleneck=chunks[-1]["reason"])
    if low is None or high is None:  # no capacity, or none found under max_rps
        return _outcome(chunks, params, low, high, converged=False)
    sign, design_ceiling = 1, high * FIT_SPAN  # no chunk above: the fit's span, or an overload's rate
    under_rps, over_rps = low, high  # bisected while no line fits
    while more():
        fit = refit(chunks, params.confidence, low / params.growth)
        estimated = sum(c["phase"] == ESTIMATE for c in chunks)
        converged = fit and consistent(fit, overload_ceiling(chunks)) and fit.half_width <= params.interval_half_width
        if converged and estimated >= MIN_ESTIMATE_CHUNKS:
            return _outcome(chunks, params, low, high, converged=True)
        if fit:  # either side of the line's crossing, never under what locating found under
            rate = min(max(fit.rps * (1 + sign * DESIGN_SPREAD), low), design_ceiling)
            sign = -sign
        else:  # no line yet: the middle of what the chunks bracket
            rate = min(math.sqrt(under_rps * over_rps), design_ceiling)
        for _ in range(CHUNKS_PER_RATE):
            step = measure(rate, ESTIMATE)
            if step["generator_bottleneck"]:
                return _outcome(chunks, params, low, high, converged=False, bottleneck=step["reason"])
            if step["overload"]:
                design_ceiling = min(design_ceiling, rate)
                break
            if not more():
                break
        if not fit:
            measured = step["offered_rps"]
            under_rps, over_rps = (
                (under_rps, min(over_rps, measured)) if over_allowed(step) else (max(under_rps, measured), over_rps)
            )
    return _outcome(chunks, params, low, high, converged=False)


def locate(measure, params: SearchParams, more) -> tuple[float | None, float | None]:
    """(a rate under every bound, a higher one over some bound) from one chunk per rate: up by
    `growth` from `start_rps`, or down when the start is over, to the floor. None for an end not
    found: no capacity at the floor (low), or every rate up to `max_rps` under (high)."""
    rate, low, high = params.start_rps, None, None
    floor = params.min_rps or params.start_rps / 16
    while more():
        step = measure(rate, LOCATE)
        if step["generator_bottleneck"]:
            break
        if over_allowed(step):
            high = step["offered_rps"]
            if low is not None or rate / params.growth < floor * (1 - 1e-9):
                break
            rate /= params.growth
        else:
            low = step["offered_rps"]
            if high is not None or (params.max_rps is not None and rate >= params.max_rps):
                break
            rate *= params.growth
    return low, high


def _outcome(
    chunks: list[dict],
    params: SearchParams,
    low: float | None,
    high: float | None,
    converged: bool,
    bottleneck: str | None = None,
) -> SearchOutcome:
    """The answer: the fitted crossing and its interval, under every rate that overloaded. Without
    such a line, the highest rate a chunk measured under every bound below every chunk that measured
    over, between the ends locating found (one chunk each)."""
    fit = None if bottleneck or low is None else refit(chunks, params.confidence, low / params.growth)
    ceiling = overload_ceiling(chunks)
    outcome = functools.partial(
        SearchOutcome, generator_bottleneck=bottleneck, mode="estimate", confidence=params.confidence,
        interval_coverage=ESTIMATE_INTERVAL_COVERAGE,
    )  # fmt: skip
    first_failing = ceiling if math.isfinite(ceiling) else high
    if fit is not None and consistent(fit, ceiling) and fit.rps < ceiling:
        hi = min(fit.high_rps, ceiling)
        return outcome(
            chunks, fit.rps, first_failing, converged, interval_low_rps=fit.low_rps,
            interval_high_rps=hi if math.isfinite(hi) else None, crossing=fit.as_dict(), interval_ends="fitted",
        )  # fmt: skip
    top = min([ceiling, *(c["offered_rps"] for c in chunks if over_allowed(c))])
    under = [c["offered_rps"] for c in chunks if not (c["generator_bottleneck"] or over_allowed(c))]
    answer = max((r for r in under if r < top), default=None)
    lo = min(low, answer) if low is not None and answer is not None else None
    hi = min(high if high is not None else math.inf, ceiling)
    return outcome(
        chunks, answer, first_failing, False, interval_low_rps=lo,
        interval_high_rps=hi if math.isfinite(hi) else None, interval_ends="located",
    )  # fmt: skip
