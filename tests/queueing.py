"""M/D/C queue simulation: the ground truth the rate search is tested against."""

import heapq

import numpy as np


def mdc_p95_ms(
    rate_rps: float, slots: int, service_s: float, n: int = 60000, seed: int = 1, overhead_s: float = 0.0
) -> float:
    """p95 time in system (wait + service) of Poisson arrivals at a FIFO queue with `slots` servers."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_rps, n))
    free = [0.0] * slots  # when each server is next free
    heapq.heapify(free)
    sojourn = np.empty(n)
    for i, t in enumerate(arrivals):
        start = max(t, heapq.heappop(free))
        done = start + service_s
        heapq.heappush(free, done)
        sojourn[i] = done - t + overhead_s
    return float(np.percentile(sojourn[n // 10 :], 95) * 1000)


def rate_at_slo(slo_ms: float, slots: int, service_s: float, overhead_s: float = 0.0) -> float:
    """The arrival rate at which the queue's p95 reaches the SLO (bisection over the rate)."""
    lo, hi = 0.01, slots / service_s
    for _ in range(40):
        mid = (lo + hi) / 2
        if mdc_p95_ms(mid, slots, service_s, overhead_s=overhead_s) <= slo_ms:
            lo = mid
        else:
            hi = mid
    return lo
