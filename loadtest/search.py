"""The SLO-driven search for the maximum sustained request rate.

Grow the offered rate geometrically from `start_rps` until a step fails the SLO,
bisect between the last passing and the first failing rate until they are within
`precision` of each other, then hold the best passing rate for a longer
confirmation step. A failed confirmation makes that rate the new failing bound
and the bisection goes on below it. The start rate is a hint, not a precondition:
when it fails, the rate steps down (divided by `growth`) until a step passes or
the floor `min_rps` fails too, and only then is there "no capacity".

`RateSearch` is the pure decision logic (rates in, verdicts in, next rate out);
`run_search` drives a `Load` (anything with set_rate / wait_settled / drain /
window) through the steps and judges each from the raw samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import gevent

from llmcap.profile import SearchParams
from loadtest.clock import now
from loadtest.stats import Slo, generator_check, judge, summarize_window

GROW, DESCEND, BISECT, CONFIRM = "grow", "descend", "bisect", "confirm"

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
        if params.min_requests < 1:
            raise ValueError("search needs min_requests >= 1")
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
    def set_rate(self, rate_rps: float) -> None: ...
    def wait_settled(self, before_s: float, timeout_s: float) -> None: ...
    def drain(self, timeout_s: float) -> None: ...
    def window(self):  # -> (samples, itl)
        ...
    def cpu_percent(self, start_s: float, end_s: float) -> float: ...


@dataclasses.dataclass
class SearchOutcome:
    steps: list[dict]
    max_sustained_rps: float | None
    first_failing_rps: float | None
    confirmed: bool
    generator_bottleneck: str | None = None
    mode: str = "search"


def window_seconds(params: SearchParams, rate_rps: float, phase: str) -> float:
    """The measured window: the phase's length, stretched at low rates so that it holds
    `min_requests` arrivals (a p95 over a handful of requests is no verdict)."""
    base = params.confirm_seconds if phase == CONFIRM else params.step_seconds
    # at most 4x: a descent to a floor far below the start must not take hours
    return max(base, min(params.min_requests / rate_rps, 4 * base))


def run_step(
    load: Load,
    rate_rps: float,
    measure_s: float,
    warmup_s: float,
    slo: Slo,
    request_timeout_s: float,
    max_lateness_ms: float,
    phase: str = "fixed",
    on_tick: Callable[[dict], None] | None = None,
) -> dict:
    """Offer `rate_rps`, measure one window, wait for its requests, drain; return the step."""
    started = now()
    load.set_rate(rate_rps)
    window_start = started + warmup_s
    window_end = window_start + measure_s
    while now() < window_end:
        if on_tick is not None:
            on_tick(
                {
                    "phase": phase,
                    "offered_rps": rate_rps,
                    "started": started,
                    "window_start": window_start,
                    "window_end": window_end,
                }
            )
        gevent.sleep(min(1.0, max(0.0, window_end - now())))
    if phase == "fixed":
        load.set_rate(0)  # a fixed run sends for exactly its duration
    # a search step keeps the load on while the window's last requests finish, as in production
    load.wait_settled(window_end, request_timeout_s + 10.0)
    load.set_rate(0)
    samples, itl = load.window()
    summary = summarize_window(samples, itl, window_start, window_end)
    passed, reason = judge(summary, slo)
    cpu_percent = load.cpu_percent(window_start, window_end)
    bottleneck, warning = generator_check(summary, max_lateness_ms, cpu_percent)
    step = {
        "phase": phase,
        "offered_rps": rate_rps,
        **summary,
        "passed": passed and bottleneck is None,
        "reason": bottleneck or reason,
        "generator_bottleneck": bottleneck is not None,
        "warmup_start": started,
        "generator_cpu_percent": cpu_percent,
        "warning": warning,
    }
    load.drain(request_timeout_s + 10.0)
    return step


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
    while (nxt := search.next_step()) is not None:
        rate, phase = nxt
        measure_s = window_seconds(params, rate, phase)
        step = run_step(
            load, rate, measure_s, params.warmup_seconds, slo, request_timeout_s, params.max_lateness_ms, phase, on_tick
        )
        step["index"] = len(steps)
        steps.append(step)
        on_step(step)
        if step["generator_bottleneck"]:
            return SearchOutcome(
                steps, search.best_rps, search.first_failing_rps, search.confirmed, generator_bottleneck=step["reason"]
            )
        search.record(rate, phase, step["passed"])
    return SearchOutcome(
        steps, search.best_rps if search.confirmed else None, search.first_failing_rps, search.confirmed
    )
