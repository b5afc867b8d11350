"""Closed forms for FIFO queues' waiting times: the exact answers the queue simulator is checked against.

Pure math, no simulation. Times are in seconds; `rate` is the arrival rate lambda, `service_s` the mean
(M/M/c) or fixed (M/D/1) service time, rho = lambda * service_s / c the utilization.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, localcontext


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability for c servers and offered load a, by the recursion
    B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)): stable where a^c / c! would overflow
    (Gross & Harris, Fundamentals of Queueing Theory, 4th ed., sec. 2.5)."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Erlang C: the probability an arrival at an M/M/c queue waits, C = c B / (c - a (1 - B)) from
    Erlang B, which keeps it stable (Gross & Harris, sec. 2.3 and 2.5)."""
    if not 0 <= a < c:
        raise ValueError(f"offered load {a} needs 0 <= a < c = {c} for a steady state")
    b = erlang_b(c, a)
    return c * b / (c - a * (1 - b))


def mmc_wait_quantile(q: float, c: int, rate: float, service_s: float) -> float:
    """The q-quantile of an M/M/c FIFO queue's waiting time: P(W > t) = C(c, a) exp(-(c mu - lambda) t)
    (Gross & Harris, sec. 2.3, the waiting-time distribution), so t_q = ln(C / (1 - q)) / (c mu - lambda);
    0 where the chance of waiting at all is below 1 - q."""
    mu = 1.0 / service_s
    wait_chance = erlang_c(c, rate / mu)
    if wait_chance <= 1 - q:
        return 0.0
    return math.log(wait_chance / (1 - q)) / (c * mu - rate)


def md1_wait_cdf(t: float, rate: float, service_s: float) -> float:
    """P(W <= t) at an M/D/1 FIFO queue, exactly (Erlang 1909; Crommelin 1932, "Delay probability
    formulae when the holding times are constant"):
    P(W <= t) = (1 - rho) sum_{k=0}^{floor(t/D)} [lambda (k D - t)]^k / k! exp(-lambda (k D - t)).
    The terms alternate and reach about exp(2 lambda t) before cancelling to a number below 1, so the
    sum is taken in Decimal with that many digits to spare (floats lose everything by t ~ 20 D)."""
    if t < 0:
        return 0.0
    rho = rate * service_s
    if not 0 <= rho < 1:
        raise ValueError(f"utilization {rho} needs 0 <= rho < 1 for a steady state")
    digits_lost = 2 * rate * t / math.log(10)
    with localcontext() as ctx:
        ctx.prec = 30 + math.ceil(digits_lost)
        lam, d, tt = Decimal(rate), Decimal(service_s), Decimal(t)
        total, factorial = Decimal(0), Decimal(1)
        for k in range(math.floor(t / service_s) + 1):
            if k:
                factorial *= k
            x = lam * (k * d - tt)  # <= 0
            power = x**k if k else Decimal(1)  # Decimal refuses 0 ** 0
            total += power / factorial * (-x).exp()
        return float((1 - Decimal(rho)) * total)


def md1_wait_quantile(q: float, rate: float, service_s: float, rel_tol: float = 1e-10) -> float:
    """The q-quantile of an M/D/1 queue's waiting time: the exact CDF (md1_wait_cdf) inverted by
    bisection, since it has no closed inverse; 0 where P(W = 0) = 1 - rho already reaches q."""
    cdf = lambda t: md1_wait_cdf(t, rate, service_s)  # noqa: E731
    return invert_cdf(cdf, q, scale=service_s, rel_tol=rel_tol)


def invert_cdf(cdf: Callable[[float], float], q: float, scale: float, rel_tol: float = 1e-10) -> float:
    """The smallest t >= 0 with cdf(t) >= q, for a nondecreasing cdf: bracket by doubling from `scale`,
    then bisect to `rel_tol`."""
    if cdf(0.0) >= q:
        return 0.0
    lo, hi = 0.0, scale
    while cdf(hi) < q:
        lo, hi = hi, 2 * hi
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return hi


def md1_mean_wait(rate: float, service_s: float) -> float:
    """Mean wait at an M/D/1 queue, rho D / (2 (1 - rho)): Pollaczek-Khinchine with E[S^2] = D^2
    (Gross & Harris, sec. 5.1.1)."""
    rho = rate * service_s
    return rho * service_s / (2 * (1 - rho))


def md1_mean_wait_by_integration(rate: float, service_s: float, per_d: int = 16, tail: float = 1e-13) -> float:
    """E[W] = integral of P(W > t) dt, from md1_wait_cdf: Simpson's rule on each interval [k D, (k+1) D]
    (the CDF is smooth inside one, kinked at its ends), until the tail is below `tail`. A check on the
    CDF, against md1_mean_wait."""
    h = service_s / per_d
    total, k = 0.0, 0
    while True:
        ts = [k * service_s + i * h for i in range(per_d + 1)]
        ys = [1 - md1_wait_cdf(t, rate, service_s) for t in ts]
        weights = [1 if i in (0, per_d) else 4 if i % 2 else 2 for i in range(per_d + 1)]
        total += h / 3 * sum(w * y for w, y in zip(weights, ys))
        k += 1
        if ys[-1] < tail:
            return total
