"""One search, two clocks: on the same scripted server, the real-time driver (gevent sleeps) and
the virtual clock do the same things at the same moments, so what a simulated search shows is what
the shipped search does."""

import pytest

from llmcap.profile import SearchParams, Slo
from loadtest import search
from loadtest.clock import REAL, VirtualClock
from loadtest.search import run_search
from tests.scripted_load import ScriptedLoad

# short windows, so the real-time run takes seconds: grow 40, 80, fail 160, bisect down to 90
PARAMS = SearchParams(
    start_rps=40, step_seconds=1.0, max_step_seconds=2.0, warmup_seconds=0.5, confirm_seconds=1.0, precision=0.2
)
SLO = Slo(p95_ms=300)
TOLERANCE_S = 0.25  # a real sleep overruns by a few ms; over a search they add up to less than this


def latency_s(t_into_window: float, rate_rps: float) -> float:
    return 0.05 if rate_rps < 100 else 1.0  # a server that holds 100 req/s and no more


def events(clock):
    load = ScriptedLoad(latency_s, clock)
    outcome = run_search(load, PARAMS, SLO, request_timeout_s=5.0)
    return load.events, outcome


@pytest.fixture(autouse=True)
def quick_looks(monkeypatch):
    monkeypatch.setattr(search, "FAIL_LOOK_S", 0.5)


def same(real, virtual) -> bool:
    return len(real) == len(virtual) and all(
        r[1:] == v[1:] and abs(r[0] - v[0]) <= TOLERANCE_S for r, v in zip(real, virtual, strict=True)
    )


@pytest.mark.realtime
def test_real_and_virtual_clocks_drive_the_same_search():
    virtual, v_outcome = events(VirtualClock(5000.0))
    real, r_outcome = events(REAL)
    rates = [value for _, action, value in virtual if action == "rate" and value > 0]
    assert rates[:3] == [40, 80, 160] and 100 in rates, rates  # the script is a real search
    diff = "\n".join(f"{r}  |  {v}" for r, v in zip(real, virtual, strict=False))
    assert same(real, virtual), f"real | virtual:\n{diff}\n({len(real)} vs {len(virtual)} events)"
    assert r_outcome.max_sustained_rps == v_outcome.max_sustained_rps
    assert [s["decision"] for s in r_outcome.steps] == [s["decision"] for s in v_outcome.steps]


def test_the_comparison_fails_on_a_shifted_or_different_sequence():
    virtual, _ = events(VirtualClock(0.0))
    middle = len(virtual) // 2
    shifted = [(t + 2 * TOLERANCE_S, a, v) if i == middle else (t, a, v) for i, (t, a, v) in enumerate(virtual)]
    assert not same(shifted, virtual)
    assert not same(virtual[:-1], virtual)
    other = [(t, a, v * 1.05 if a == "rate" else v) for t, a, v in virtual]
    assert not same(other, virtual)
