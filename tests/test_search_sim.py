"""The search's statistical properties, where they can be tested: the shipped search
(`run_search`) in virtual time (loadtest/simulated.py), 20 seeded searches per setting, against
the true knee of the simulated server (the rate at which the long-run fraction of requests over
the bound crosses the allowed 5 %, from 3·10^5 to 10^6 requests). Deterministic: the seeds fix
every draw. Each accuracy check is shown to fail when the answers are biased by ±5 %."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest

from llmcap.confidence import SEARCH_INTERVAL_COVERAGE, Coverage
from llmcap.profile import SearchParams, Slo
from llmcap.traces import ArrivalTrace, read_arrivals
from loadtest.search import BISECT, DESCEND, GROW, SearchOutcome, run_step, window_seconds
from loadtest.simulated import Server, SimulatedLoad, knee_rps, simulate_search
from tests.queueing import rate_at_slo

SEEDS = range(20)


def seeded(name: str) -> str:
    """A test id naming the seeds it ran, so a failure can be rerun exactly."""
    return f"{name}-seeds{SEEDS.start}-{SEEDS.stop - 1}"


# tests/test_search_e2e.py's short windows, for the settings real searches also run
FAST = SearchParams(
    start_rps=40, growth=2, step_seconds=8, warmup_seconds=4, confirm_seconds=10, precision=0.03, max_step_seconds=30
)
PULSE = Path(__file__).parent / "data" / "pulse.csv"  # 40 then 120 requests a second, a 2-s period


@dataclasses.dataclass(frozen=True, eq=False)  # hashed as itself: the caches below key on it
class Setting:
    server: Server
    slo_ms: float
    params: SearchParams
    arrival: str = "poisson"
    knee_requests: int = 300_000  # at the knee the fraction over rises steeply: these pin it to 0.1 %

    @property
    def trace(self) -> ArrivalTrace | None:
        return read_arrivals(PULSE) if self.arrival == "trace" else None


SETTINGS = {
    # benchmarks/verdict_calibration.py's two: many slots at a fast service, few at a slow one
    "many-slots": Setting(Server(16, 0.100), 300, SearchParams(start_rps=40)),
    "few-slots": Setting(Server(4, 0.200), 600, SearchParams(start_rps=4)),
    "C8-fast": Setting(Server(8, 0.100), 300, FAST),
    "C12-fast": Setting(Server(12, 0.100), 220, FAST),
    "C8-start-240": Setting(Server(8, 0.100), 300, dataclasses.replace(FAST, start_rps=240)),
    "service-cv-0.5": Setting(Server(16, 0.100, service_cv=0.5), 300, SearchParams(start_rps=40)),
    "trace-pulse": Setting(Server(8, 0.050), 150, SearchParams(start_rps=20), arrival="trace"),
    # refuses past 16 waiting, times out at 2 s: errors, not latency, end the load it holds
    "overload-errors": Setting(Server(8, 0.100, queue_limit=16, timeout_s=2.0), 300, SearchParams(start_rps=40)),
}
# the server's speed drawn afresh each minute, 8.8 % apart (benchmarks/engine_drift.py on the CPU engine)
WANDERING = Setting(Server(16, 0.100, wander_sd=0.088), 300, SearchParams(start_rps=40), knee_requests=1_000_000)

# what the answer must be: at most slightly under the knee (the bisection resolves it to
# `precision`, 3 %, and a pass needs evidence: up to 4 % under in the median) and never above it
# in the median by more than a third of that (an answer over the knee breaks the SLO it is sized for)
MEDIAN_ERROR = (-0.04, 0.01)
SPREAD, WITHIN_SPREAD = 0.08, 18  # at least 18 of 20 answers within 8 % of the knee
MAX_MEDIAN_SEARCH_S = 480  # machine time a default search may take (issue 37 asks for half)


@functools.cache
def true_knee(setting: Setting) -> float:
    """The rate at which the long-run fraction over the p95 bound reaches 5 % and the fraction
    failed reaches the SLO's 1 %, whichever is lower (the search must hold both)."""
    s = setting.server
    guess = rate_at_slo(setting.slo_ms, s.slots, s.service_s, overhead_s=s.overhead_s, iterations=20)
    knees = [(setting.slo_ms / 1000, 0.05)]
    if s.queue_limit is not None or s.timeout_s is not None:
        knees.append((math.inf, Slo().max_error_rate))  # only such a server fails requests
    return min(
        knee_rps(s, bound, allowed, setting.knee_requests, 0.5 * guess, 1.1 * guess, 99, setting.arrival, setting.trace)
        for bound, allowed in knees
    )


@functools.cache
def searches(setting: Setting) -> tuple[tuple[SearchOutcome, float], ...]:
    slo = Slo(p95_ms=setting.slo_ms)
    return tuple(
        simulate_search(setting.server, setting.params, slo, seed, setting.arrival, setting.trace) for seed in SEEDS
    )


def errors_of(setting: Setting, bias: float = 0.0) -> np.ndarray:
    knee = true_knee(setting)
    return np.array([(o.max_sustained_rps or 0.0) * (1 + bias) / knee - 1 for o, _ in searches(setting)])


def check_accuracy(errors: np.ndarray, name: str) -> None:
    seen = f"{name}: errors by seed {dict(zip(SEEDS, np.round(errors, 3).tolist(), strict=True))}"
    median = float(np.median(errors))
    assert MEDIAN_ERROR[0] <= median <= MEDIAN_ERROR[1], f"median error {median:+.3f}; {seen}"
    within = int(np.sum(np.abs(errors) <= SPREAD))
    assert within >= WITHIN_SPREAD, f"{within} of {len(errors)} within {SPREAD:.0%}; {seen}"


@pytest.mark.parametrize("name", SETTINGS, ids=seeded)
def test_the_answer_lands_at_the_true_knee(name):
    setting = SETTINGS[name]
    assert all(o.max_sustained_rps for o, _ in searches(setting)), "a search found no capacity"
    check_accuracy(errors_of(setting), name)


@pytest.mark.parametrize("bias", [0.05, -0.05])
@pytest.mark.parametrize("name", SETTINGS, ids=seeded)
def test_the_accuracy_check_fails_on_a_biased_answer(name, bias):
    with pytest.raises(AssertionError):
        check_accuracy(errors_of(SETTINGS[name], bias), name)


def covers(outcome: SearchOutcome, knee: float) -> bool:
    low, high = outcome.interval_low_rps, outcome.interval_high_rps
    return low is not None and low <= knee and (high is None or high >= knee)


def coverage(setting: Setting) -> int:
    return sum(covers(o, true_knee(setting)) for o, _ in searches(setting))


POINT_TEST = pytest.mark.xfail(strict=True, reason="issue 37: a step fails on its error rate without confidence")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=POINT_TEST, id=seeded(n)) if n == "overload-errors" else n for n in SETTINGS],
    ids=seeded,
)
def test_the_interval_holds_the_knee_in_most_searches(name):
    held = coverage(SETTINGS[name])
    assert held >= 10, f"{name}: the interval held the knee in {held} of {len(SEEDS)} searches"


@pytest.mark.xfail(strict=True, reason="issue 37: the '95 %' interval holds the knee 60-100 % of the time by setting")
def test_the_interval_holds_the_knee_as_often_as_its_label_says():
    held = sum(coverage(s) for s in SETTINGS.values())
    total = len(SETTINGS) * len(SEEDS)
    # 95 % claimed: at or above 90 % of the searches, binomial noise allowing
    assert held >= 0.90 * total, f"{held} of {total}"


@pytest.mark.slow
def test_the_printed_coverage_is_the_measured_one():
    """Every interval the search prints carries SEARCH_INTERVAL_COVERAGE's label: it must be what
    these searches measure now, over all the settings and on the wandering server."""
    held = sum(coverage(s) for s in SETTINGS.values())
    wandering = sum(covers(o, true_knee(WANDERING)) for o, _ in searches(WANDERING))
    measured = Coverage(held, len(SETTINGS) * len(SEEDS), wandering, len(SEEDS), SEARCH_INTERVAL_COVERAGE.hardest)
    assert measured == SEARCH_INTERVAL_COVERAGE, f"measured {measured}"


@pytest.mark.xfail(strict=True, reason="issue 37: a search sees a few minutes of a server that wanders by the minute")
@pytest.mark.slow
def test_on_a_wandering_server_the_answer_lands_at_its_long_run_knee():
    check_accuracy(errors_of(WANDERING), "wandering")


@pytest.mark.parametrize("name", ["many-slots", "few-slots", "service-cv-0.5", "trace-pulse"], ids=seeded)
def test_a_default_search_fits_its_time(name):
    took = sorted(s for _, s in searches(SETTINGS[name]))
    assert np.median(took) <= MAX_MEDIAN_SEARCH_S, f"{name}: simulated seconds by search {took}"


def test_a_start_rate_above_capacity_steps_down_then_finds_it():
    for seed, (outcome, _) in zip(SEEDS, searches(SETTINGS["C8-start-240"]), strict=True):
        phases = [(round(s["offered_rps"]), s["phase"], s["passed"]) for s in outcome.steps[:3]]
        assert phases == [(240, GROW, False), (120, DESCEND, False), (60, DESCEND, True)], (seed, phases)


def test_the_bursts_of_a_trace_cost_capacity():
    """Else the trace setting would not tell a trace search from a Poisson one."""
    pulse, poisson = SETTINGS["trace-pulse"], dataclasses.replace(SETTINGS["trace-pulse"], arrival="poisson")
    assert true_knee(pulse) < 0.9 * true_knee(poisson)


def test_overload_fails_on_errors_and_never_passes_them():
    for outcome, _ in searches(SETTINGS["overload-errors"]):
        errored = [s for s in outcome.steps if s["error_rate"] > Slo().max_error_rate]
        assert errored and all(not s["passed"] and "error rate" in s["reason"] for s in errored)


@pytest.mark.xfail(strict=True, reason="issue 37: a 95 % step verdict judges its window, not the rate")
def test_a_step_above_the_knee_passes_at_most_as_often_as_its_confidence_allows():
    setting = SETTINGS["few-slots"]
    slo, rate = Slo(p95_ms=setting.slo_ms), 1.03 * true_knee(setting)
    min_s, max_s = window_seconds(setting.params, slo, rate, BISECT)
    passed = 0
    for seed in range(40):
        load = SimulatedLoad(setting.server, seed=seed)
        step = run_step(load, rate, min_s, max_s, setting.params.warmup_seconds, slo, 0.95, 60.0, 50.0, BISECT)
        passed += step["passed"]
    assert passed <= 4, f"{passed} of 40 steps at 1.03x the knee passed"  # 5 % of 40, and binomial noise
