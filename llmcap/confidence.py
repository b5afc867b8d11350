"""How sure a verdict is: the fraction of requests over a latency bound, with an interval.

A latency SLO "p95 <= L" holds when fewer than 5 % of requests take longer than L. Counting the
requests over L (MLPerf Inference's early-stopping criterion) turns the question into one about a
proportion, which has exact intervals, instead of one about a sample percentile, which has none.

Requests in one window are not independent: a queue that builds up makes many neighbours slow
together, so the binomial interval alone is far too narrow at high utilization. The interval used
is the wider of two:
- the exact (Clopper-Pearson) binomial interval, right when requests are independent and the only
  information when the window is short or no request was slow;
- the batch-means interval: the window cut into `BATCHES` consecutive slices by scheduled time,
  the fraction over the bound in each, and a Student-t interval on their mean. Correlation within a
  slice widens the spread of the slices' fractions, so it widens this interval (simulation output
  analysis; Law & Kelton, "Simulation Modeling and Analysis", ch. 9; Schmeiser 1982 on the number
  of batches).
Both assume something a queue breaks when its swings are slow against the window: slices a few
seconds long are not independent, and a window that held no burst shows no spread at all. So the
binomial interval counts clusters, not requests: exceedances of a high level come in clusters whose
mean size, 1/theta (theta: the extremal index), is estimated from the requests over a lower level
that the window does show (its 90th percentile for a p95 bound, but at least CLUSTER_LEVEL of the
bound), by Ferro and Segers' intervals estimator; the interval is that of a binomial with n * theta
trials. A quiet window of a slowly swinging queue then cannot pass on a count that only
independence would make enough.
No dependency beyond the standard library: the regularized incomplete beta function gives both
the binomial and the Student-t tails.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"
BATCHES = 10
MIN_BATCHES = 4  # fewer non-empty slices than this: the batch-means half of the interval knows nothing
# clusters are counted over the window's own 90th percentile (p95 bound) but not below this share of
# the bound: chosen by simulated searches of M/D/C queues (benchmarks/verdict_calibration.py), where
# 0.5 gave the same coverage with lower answers and 0.9 let quiet windows pass above the knee again
CLUSTER_LEVEL = 0.75


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-13:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _solve(f, lo: float, hi: float) -> float:
    """The root of an increasing f on [lo, hi] by bisection (60 halvings: far below any printed digit)."""
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def binomial_upper(over: float, n: float, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on the fraction, from `over` of `n`."""
    if n <= 0:
        return 1.0
    if over >= n - 1e-9:
        return 1.0
    # the p at which seeing `over` or fewer has probability 1 - confidence: P(X <= over) = 1 - I_p(over+1, n-over)
    return _solve(lambda p: (1.0 - confidence) - (1.0 - betainc(over + 1, n - over, p)), 0.0, 1.0)


def fewest_to_pass(allowed_fraction: float, confidence: float) -> int:
    """The fewest requests, none over the bound, whose exact upper bound on the fraction over,
    1 - (1 - confidence)^(1/n), falls below the allowed fraction (the rule of three, exactly)."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - allowed_fraction))


def binomial_lower(over: float, n: float, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on the fraction, from `over` of `n`."""
    if n <= 0 or over <= 0:
        return 0.0
    # the p at which seeing `over` or more has probability 1 - confidence: P(X >= over) = I_p(over, n-over+1)
    return _solve(lambda p: betainc(over, n - over + 1, p) - (1.0 - confidence), 0.0, 1.0)


def t_quantile(confidence: float, df: int) -> float:
    """The one-sided Student-t quantile: P(T <= t) = confidence, for confidence >= 0.5."""

    def cdf(t: float) -> float:
        return 1.0 - 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))

    return _solve(lambda t: cdf(t) - confidence, 0.0, 1e4)


@dataclasses.dataclass
class Exceedance:
    """One latency bound judged over one window."""

    name: str  # "p95", "p99", "TTFT p95"
    limit_ms: float
    allowed_fraction: float  # 0.05 for a p95 bound
    n: int
    over: int
    low: float  # interval on the true fraction over the bound, at `confidence`
    high: float
    confidence: float
    decision: str  # pass / fail / undecided
    effective_n: float  # n * theta: the independent trials the binomial interval credits (see extremal_index)

    @property
    def fraction(self) -> float:
        return self.over / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "fraction": self.fraction}


def exceedance(
    name: str, limit_ms: float, quantile: float, latency_ms: np.ndarray, batch_of: np.ndarray, confidence: float
) -> Exceedance:
    """Judge "the `quantile`-th percentile of latency <= limit" from the requests' latencies.

    `latency_ms` may hold +inf for a request known to be over (still open past the bound);
    `batch_of` gives each request's slice index (0 .. BATCHES-1) by scheduled time; both are in
    scheduled order, which the clustering estimate needs.
    """
    allowed = 1.0 - quantile / 100.0
    theta = 1.0
    if len(latency_ms):
        # a level the window crosses about twice as often as the bound allows, so its clusters are
        # seen; but never far below the bound, where clusters are short waits that say nothing of it
        level = max(float(np.quantile(latency_ms, 1.0 - 2 * allowed, method="lower")), CLUSTER_LEVEL * limit_ms)
        theta = extremal_index(latency_ms, level)
    return fraction_test(name, limit_ms, allowed, latency_ms > limit_ms, batch_of, confidence, theta)


def extremal_index(values: np.ndarray, level: float) -> float:
    """theta in (0, 1]: the reciprocal of the mean cluster size of the values over `level`, in
    their order (1: they come alone). Ferro & Segers (2003), "Inference for clusters of extreme
    values", J. R. Stat. Soc. B 65: the intervals estimator, from the gaps between exceedances;
    it needs no choice of a cluster-separating run length. Fewer than 3 exceedances: 1."""
    at = np.flatnonzero(values > level)
    if len(at) < 3:
        return 1.0
    gaps = np.diff(at).astype(float)
    if gaps.max() <= 2:
        theta = 2 * gaps.sum() ** 2 / (len(gaps) * (gaps**2).sum())
    else:
        theta = 2 * (gaps - 1).sum() ** 2 / (len(gaps) * ((gaps - 1) * (gaps - 2)).sum())
    return float(min(1.0, theta))


def fraction_test(
    name: str,
    limit_ms: float,
    allowed: float,
    over_mask: np.ndarray,
    batch_of: np.ndarray,
    confidence: float,
    theta: float = 1.0,
) -> Exceedance:
    """Is the true fraction of requests in `over_mask` below `allowed`? PASS: below it with
    `confidence`; FAIL: above it with `confidence`; otherwise UNDECIDED. `theta` (extremal_index)
    scales the binomial interval's trials: clustered requests are fewer independent ones."""
    n, over = int(len(over_mask)), int(over_mask.sum())
    low = binomial_lower(over * theta, n * theta, confidence)
    high = binomial_upper(over * theta, n * theta, confidence)
    if n:
        counts = np.bincount(batch_of, minlength=BATCHES)
        overs = np.bincount(batch_of, weights=over_mask, minlength=BATCHES)
        used = counts > 0
        k = int(used.sum())
        if k >= MIN_BATCHES:
            fractions = overs[used] / counts[used]
            half = t_quantile(confidence, k - 1) * float(fractions.std(ddof=1)) / math.sqrt(k)
            low = min(low, max(0.0, over / n - half))
            high = max(high, min(1.0, over / n + half))
        else:
            low, high = 0.0, 1.0
    if high <= allowed:
        decision = PASS
    elif low > allowed:
        decision = FAIL
    else:
        decision = UNDECIDED
    return Exceedance(name, limit_ms, allowed, n, over, low, high, confidence, decision, n * theta)


def batch_index(scheduled_s: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """Each request's slice of [start_s, end_s), by its scheduled time."""
    span = max(end_s - start_s, 1e-9)
    return np.clip(((scheduled_s - start_s) / span * BATCHES).astype(int), 0, BATCHES - 1)


def rise_ms(latency_ms: np.ndarray, batch_of: np.ndarray, confidence: float, min_rise_ms: float = 0.0) -> float:
    """How far latency in the window's second half is above its first half, when beyond noise, by
    more than 10 % and by more than `min_rise_ms`; else 0. Such a rise says the queue has not
    reached its steady state. (A fast server's 3 ms becoming 3.5 ms is 17 % and may be beyond its
    tiny noise, but it is no queue building toward a 500-ms bound: `look` passes a share of the
    bound as the minimum.) Compared on the slices' mean latencies (requests known only to be over
    count at the largest finite latency seen)."""
    finite = latency_ms[np.isfinite(latency_ms)]
    if not len(finite):
        return 0.0
    values = np.where(np.isfinite(latency_ms), latency_ms, finite.max())
    counts = np.bincount(batch_of, minlength=BATCHES)
    sums = np.bincount(batch_of, weights=values, minlength=BATCHES)
    half = BATCHES // 2
    first = [sums[i] / counts[i] for i in range(half) if counts[i]]
    second = [sums[i] / counts[i] for i in range(half, BATCHES) if counts[i]]
    if len(first) < 2 or len(second) < 2:
        return 0.0
    m1, m2 = float(np.mean(first)), float(np.mean(second))
    se = math.sqrt(np.var(first, ddof=1) / len(first) + np.var(second, ddof=1) / len(second))
    df = len(first) + len(second) - 2
    beyond_noise = m2 > 1.1 * m1 and m2 - m1 > max(t_quantile(confidence, df) * se, min_rise_ms)
    return m2 - m1 if beyond_noise else 0.0


def rising(latency_ms: np.ndarray, batch_of: np.ndarray, confidence: float, min_rise_ms: float = 0.0) -> bool:
    """Latency climbing beyond noise (rise_ms above 0): not at steady state yet."""
    return rise_ms(latency_ms, batch_of, confidence, min_rise_ms) > 0


def falling(latency_ms: np.ndarray, batch_of: np.ndarray, confidence: float, min_fall_ms: float = 0.0) -> bool:
    """`rising` with the halves swapped: latency in the window's second half below its first half
    beyond noise. A burst of arrivals is passing (the queue it built is emptying), so the window
    is not at steady state either, and its exceedances are one cluster the interval cannot see as
    one (extremal_index needs the gaps between clusters)."""
    return rising(latency_ms, BATCHES - 1 - batch_of, confidence, min_fall_ms)


# -- the search's interval: what it held where the true maximum was known ---------------------------
@dataclasses.dataclass(frozen=True)
class Coverage:
    """How many intervals held the truth, of how many, on simulated servers whose true maximum is
    known: over all of them, and on the hardest (measured, not nominal)."""

    held: int
    searches: int
    hardest_held: int
    hardest_searches: int
    hardest: str

    @property
    def label(self) -> str:
        return (
            f"held the true maximum in {self.held} of {self.searches} simulated searches "
            f"({100 * self.held / self.searches:.0f} %; {self.hardest_held} of {self.hardest_searches} {self.hardest})"
        )


# tests/test_search_sim.py recomputes both from the shipped search and fails when they drift
WANDERING = "on a server whose speed wanders by the minute, as the CPU engine's"
SEARCH_INTERVAL_COVERAGE = Coverage(held=128, searches=160, hardest_held=1, hardest_searches=20, hardest=WANDERING)
# what the estimator's interval ends are (loadtest/estimate.py: SearchOutcome.interval_ends)
ESTIMATE_ENDS = {
    "fitted": "where the fitted fraction over crosses the allowed",
    "located": "no line fits: the rates locating found under and over, one chunk each",
}
# the estimator's (loadtest/estimate.py): fixed on benchmarks/estimate_calibration.py's calibration seeds
ESTIMATE_INTERVAL_COVERAGE = Coverage(held=186, searches=240, hardest_held=41, hardest_searches=60, hardest=WANDERING)


# -- scores of a quality pass (loadtest/accuracy.py, reports/quality.py) ------------------------------
BOOTSTRAP_REPLICATES = 4000
EXACT_LABEL = "exact interval, covers at least 95 %"  # Clopper-Pearson: guaranteed for every true share
BOOTSTRAP_LABEL = "bootstrap interval, nominal 95 %, coverage not measured"


def interval_label(interval: dict) -> str:
    """What an interval's coverage is, as recorded with it (older records name only their level)."""
    return interval.get("label") or f"nominal {interval['confidence'] * 100:g} %, coverage not measured"


def share_interval(values: np.ndarray) -> dict:
    """The mean score's two-sided interval, labelled with what its coverage is: for 0/1 scores the
    exact binomial one (Clopper & Pearson 1934), 2.5 % a side, whose coverage is at least 95 % at
    every true share, boundaries included; other scores, a percentile bootstrap."""
    if len(values) and np.isin(values, (0.0, 1.0)).all():
        right, n = float(values.sum()), len(values)
        low, high = binomial_lower(right, n, 0.975), binomial_upper(right, n, 0.975)
        return {"low": low, "high": high, "confidence": 0.95, "label": EXACT_LABEL}
    low, high = bootstrap_mean_interval(values)
    return {"low": low, "high": high, "confidence": 0.95, "label": BOOTSTRAP_LABEL}


def bootstrap_mean_interval(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval on the mean of per-prompt scores (Efron & Tibshirani
    1993, ch. 13); for 0/1 scores, on the share right."""
    if not len(values):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP_REPLICATES, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_ratio_interval(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float] | None:
    """sum(a) / sum(b) over paired scores (the same prompts), with a paired percentile bootstrap
    interval: prompts are resampled together, so how hard each prompt is cancels. None when b
    scored nothing."""
    if not len(a) or b.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), (BOOTSTRAP_REPLICATES, len(a)))
    num, den = a[picks].sum(axis=1), b[picks].sum(axis=1)
    ratios = num[den > 0] / den[den > 0]
    tail = (1 - confidence) / 2
    return float(a.sum() / b.sum()), float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))
