"""M/D/C queue simulation: the ground truth the rate search is tested against."""

import heapq

import numpy as np


def mdc_p95_ms(
    rate_rps: float,
    slots: int,
    service_s: float,
    n: int = 60000,
    seed: int = 1,
    overhead_s: float = 0.0,
    arrivals: np.ndarray | None = None,
) -> float:
    """p95 time in system (wait + service) of Poisson arrivals (or the `arrivals` given, in seconds) at
    a FIFO queue with `slots` servers."""
    if arrivals is None:
        rng = np.random.default_rng(seed)
        arrivals = np.cumsum(rng.exponential(1 / rate_rps, n))
    n = len(arrivals)
    free = [0.0] * slots  # when each server is next free
    heapq.heapify(free)
    sojourn = np.empty(n)
    for i, t in enumerate(arrivals):
        start = max(t, heapq.heappop(free))
        done = start + service_s
        heapq.heappush(free, done)
        sojourn[i] = done - t + overhead_s
    return float(np.percentile(sojourn[n // 10 :], 95) * 1000)


def rate_at_slo(
    slo_ms: float, slots: int, service_s: float, overhead_s: float = 0.0, arrivals_at=None, iterations: int = 40
) -> float:
    """The arrival rate at which the queue's p95 reaches the SLO (bisection over the rate); Poisson
    arrivals, or `arrivals_at(rate)` (arrival times in seconds at that mean rate)."""
    lo, hi = 0.01, slots / service_s
    for _ in range(iterations):
        mid = (lo + hi) / 2
        given = arrivals_at(mid) if arrivals_at else None
        if mdc_p95_ms(mid, slots, service_s, overhead_s=overhead_s, arrivals=given) <= slo_ms:
            lo = mid
        else:
            hi = mid
    return lo
