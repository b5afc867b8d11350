"""One clock for every timestamp llmcap writes, and the clock a search runs on.

Wall-clock seconds (so request samples line up with Prometheus scrapes and logs)
that never step backwards (so durations are exact): the wall time at import plus
the monotonic time elapsed since.

A search and its steps read the time and wait through a `Clock`: `REAL` is that
wall clock with gevent's sleep (Locust's greenlets run meanwhile); a `VirtualClock`
jumps ahead instead of waiting, so the same code runs a simulated search
(loadtest/simulated.py) thousands of times faster than real time.
"""

from __future__ import annotations

import time
from typing import Protocol

_WALL0 = time.time()
_PERF0 = time.perf_counter()
_perf = time.perf_counter


def now() -> float:
    return _WALL0 + (_perf() - _PERF0)


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time; a sleep yields to the other greenlets."""

    def now(self) -> float:
        return now()

    def sleep(self, seconds: float) -> None:
        import gevent  # imported here: a virtual clock needs no event loop

        gevent.sleep(seconds)


class VirtualClock:
    """Simulated time: a sleep moves the time on at once."""

    def __init__(self, start_s: float = 0.0):
        self.t = start_s

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


REAL = RealClock()
