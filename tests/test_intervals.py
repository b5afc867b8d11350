"""An interval's label is its coverage: for the quality pass's 0/1 scores the exact binomial
interval, whose coverage is computed here exactly (summed over every outcome k of n prompts) at
each true share on a grid, boundaries included; the bootstrap it replaced fails the same check."""

import math

import numpy as np
import pytest

from llmcap.confidence import BOOTSTRAP_LABEL, EXACT_LABEL, bootstrap_mean_interval, share_interval

SHARES = np.linspace(0.0, 1.0, 1001)


def coverage(n: int, interval_of) -> np.ndarray:
    """P(the interval from k of n right holds p), for each p in SHARES."""
    total = np.zeros_like(SHARES)
    for k in range(n + 1):
        low, high = interval_of(np.array([1.0] * k + [0.0] * (n - k)))
        pmf = math.comb(n, k) * SHARES**k * (1 - SHARES) ** (n - k)
        total += pmf * ((low - 1e-12 <= SHARES) & (SHARES <= high + 1e-12))
    return total


def exact(values: np.ndarray) -> tuple[float, float]:
    interval = share_interval(values)
    assert interval["label"] == EXACT_LABEL
    return interval["low"], interval["high"]


@pytest.mark.parametrize("n", [4, 24, 50])
def test_the_exact_interval_covers_at_least_95_percent_at_every_share(n):
    held = coverage(n, exact)
    assert held.min() >= 0.95, f"n={n}: {held.min():.4f} at p={SHARES[held.argmin()]:.3f}"


def test_the_bootstrap_fails_that_check_so_it_can_fail():
    held = coverage(24, bootstrap_mean_interval)
    assert held.min() < 0.80  # 0 of 24 right gives 0-0 %, which holds no share above zero


def test_none_right_is_not_a_zero_width_interval():
    low, high = exact(np.zeros(24))
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 24))  # 14.2 %


def test_scores_between_zero_and_one_say_their_interval_is_nominal():
    assert share_interval(np.array([0.5, 1.0, 0.0, 1.0]))["label"] == BOOTSTRAP_LABEL
