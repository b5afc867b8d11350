"""A load whose server the test scripts exactly: requests arrive evenly at the step's rate and take
`latency_s(seconds into the window, rate)`. On any clock: the same script in real time and in
virtual time must make the search do the same things at the same moments (tests/test_clock.py)."""

from __future__ import annotations

import numpy as np

from llmcap.rundir import SAMPLE_DTYPE
from loadtest.clock import REAL, Clock

SETTLE_POLL_S, DRAIN_POLL_S = 0.2, 0.3  # as RunnerLoad polls


class ScriptedLoad:
    def __init__(self, latency_s, clock: Clock = REAL):
        self.latency_s = latency_s  # (seconds into the window, rate) -> seconds
        self.clock = clock
        self.start: float | None = None
        self.stop: float | None = None
        self.rate = 0.0
        self.window_start = 0.0
        self.first: float | None = None  # when the run began: event times count from here
        self.events: list[tuple[float, str, float]] = []

    def _event(self, action: str, value: float) -> None:
        t = self.clock.now()
        self.first = t if self.first is None else self.first
        self.events.append((t - self.first, action, value))

    def set_rate(self, rate_rps: float) -> None:
        self._event("rate", rate_rps)
        if rate_rps > 0:
            self.rate, self.start, self.stop = rate_rps, self.clock.now(), None
        elif self.start is not None and self.stop is None:
            self.stop = self.clock.now()

    def set_concurrency(self, n: int) -> None:
        raise NotImplementedError("a scripted load is open-loop")

    def begin_step(self, window_start_s: float) -> None:
        self._event("begin_step", 0.0)
        self.window_start = window_start_s

    def _requests(self, until: float) -> np.ndarray:
        if self.start is None:
            return np.zeros(0, SAMPLE_DTYPE)
        last = min(until, self.stop or until)
        scheduled = self.start + np.arange(0.0, max(last - self.start, 0.0), 1.0 / self.rate)
        s = np.zeros(len(scheduled), SAMPLE_DTYPE)
        s["scheduled_s"] = s["issued_s"] = s["sent_s"] = scheduled
        latency = [self.latency_s(t - self.window_start, self.rate) for t in scheduled]
        s["end_s"] = scheduled + np.array(latency, dtype=float)
        s["first_token_s"] = scheduled + 0.01
        s["status"], s["prompt_tokens"], s["completion_tokens"] = 200, 100, 10
        return s

    def step_so_far(self):
        self._event("look", 0.0)
        t = self.clock.now()
        s = self._requests(t)
        done = s["end_s"] <= t
        return s[done], s["scheduled_s"][~done], t

    def window(self):
        s = self._requests(self.clock.now())
        return s[s["end_s"] <= self.clock.now()], np.zeros(0, np.float32)

    def _open_before(self, before_s: float) -> bool:
        s = self._requests(self.clock.now())
        return bool(((s["scheduled_s"] < before_s) & (s["end_s"] > self.clock.now())).any())

    def wait_settled(self, before_s: float, timeout_s: float) -> None:
        deadline = self.clock.now() + timeout_s
        while self._open_before(before_s) and self.clock.now() < deadline:
            self.clock.sleep(SETTLE_POLL_S)
        self._event("settled", 0.0)

    def discard_queued(self) -> None:
        self._event("discard", 0.0)  # every scripted request is answered: nothing waits for a user

    def drain(self, timeout_s: float) -> None:
        deadline = self.clock.now() + timeout_s
        while self.clock.now() < deadline:
            self.clock.sleep(DRAIN_POLL_S)
            if not self._open_before(float("inf")):
                break
        self._event("drained", 0.0)

    def cpu_percent(self, start_s: float, end_s: float) -> float:
        return 0.0
