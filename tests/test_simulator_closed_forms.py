"""The queue simulator against closed forms, not against another simulation: the waiting-time p95 and
p99 of `loadtest.simulated.serve` fed the shipped Poisson arrivals, at M/M/c (Erlang C) and M/D/1
(Erlang 1909), utilization 0.7, 0.85 and 0.95.

A million requests resolve a waiting-time percentile to about 1-2 % at utilization 0.7 and 6-7 % at
0.95 (successive waits are strongly correlated there), so each case asserts agreement within 3
batch-means standard errors, and that a service time 5 % too long is told apart. The 2 % agreement
at every utilization takes about 10^8 requests per case: benchmarks/closed_forms.py, results in
benchmarks/README.md.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from loadtest.arrivals import interarrival_gaps
from loadtest.simulated import Server, serve
from tests.closed_forms import (
    erlang_c,
    md1_mean_wait,
    md1_mean_wait_by_integration,
    md1_wait_cdf,
    md1_wait_quantile,
    mmc_wait_quantile,
)

SERVICE_S = 0.1
REQUESTS = 1_000_000
WARMUP = REQUESTS // 20  # the queue starts empty: its first requests wait less than in steady state
BATCHES = 20
QUANTILES = (0.95, 0.99)
MODELS = {"M/M/4": (4, 1.0), "M/D/1": (1, 0.0)}  # (slots, service-time cv)


def exact_wait(model: str, q: float, rate: float) -> float:
    slots, cv = MODELS[model]
    return mmc_wait_quantile(q, slots, rate, SERVICE_S) if cv else md1_wait_quantile(q, rate, SERVICE_S)


def simulated_waits(model: str, rate: float, seed: int, service_s: float = SERVICE_S) -> np.ndarray:
    """Waits (start - arrival) of REQUESTS Poisson arrivals from loadtest/arrivals.py, after the warm-up."""
    slots, cv = MODELS[model]
    gaps = interarrival_gaps(rate, "poisson", random.Random(seed))
    arrivals = np.cumsum(np.fromiter(itertools.islice(gaps, REQUESTS), float, REQUESTS))
    start, _, error = serve(arrivals, Server(slots=slots, service_s=service_s, service_cv=cv, overhead_s=0.0), seed)
    assert not error.any()
    return (start - arrivals)[WARMUP:]


def quantile_and_se(waits: np.ndarray, q: float) -> tuple[float, float]:
    """The q-quantile and its standard error from BATCHES consecutive batches (batch means, which
    carry the correlation between successive waits that a per-request formula would ignore)."""
    per_batch = [np.quantile(b, q) for b in np.array_split(waits, BATCHES)]
    return float(np.quantile(waits, q)), float(np.std(per_batch, ddof=1) / math.sqrt(BATCHES))


def test_closed_forms_agree_with_each_other_and_textbook_values():
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # two servers, a = 1: C = 1 / (1 + 1 + 1)
    assert erlang_c(1, 0.6) == pytest.approx(0.6)  # M/M/1: an arrival waits with probability rho
    rho, rate = 0.8, 8.0
    # M/M/1: P(W > t) = rho exp(-(mu - lambda) t)
    assert mmc_wait_quantile(0.95, 1, rate, SERVICE_S) == pytest.approx(math.log(rho / 0.05) / (10 - rate))
    assert md1_wait_cdf(0.0, rate, SERVICE_S) == pytest.approx(1 - rho)
    assert md1_mean_wait_by_integration(rate, SERVICE_S) == pytest.approx(md1_mean_wait(rate, SERVICE_S), rel=1e-6)
    # deterministic service waits less than exponential at the same load
    assert md1_wait_quantile(0.95, rate, SERVICE_S) < mmc_wait_quantile(0.95, 1, rate, SERVICE_S)


@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize("rho", [0.7, 0.85, 0.95])
@pytest.mark.parametrize("model", list(MODELS))
def test_simulated_waits_match_the_closed_form(model, rho, seed):
    rate = rho * MODELS[model][0] / SERVICE_S
    waits = simulated_waits(model, rate, seed)
    longer = simulated_waits(model, rate, seed, service_s=1.05 * SERVICE_S)
    for q in QUANTILES:
        exact = exact_wait(model, q, rate)
        got, se = quantile_and_se(waits, q)
        seen = f"{model} rho {rho} seed {seed} p{q * 100:g}: simulated {got:.4f} s (se {se:.4f}), exact {exact:.4f} s"
        assert se <= 0.1 * exact, seen  # enough requests to tell 5 % apart at the worst case
        assert abs(got - exact) <= 3 * se, seen
        biased, biased_se = quantile_and_se(longer, q)
        assert abs(biased - exact) > 3 * biased_se, f"{seen}; with 5 % longer service {biased:.4f} s"
