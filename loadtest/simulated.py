"""A simulated server and load generator: the shipped search, run in virtual time.

`SimulatedLoad` implements the whole search `Load` protocol (open-loop rates from
loadtest/arrivals.py, a closed loop of N open requests, draining, the generator's CPU
figure) against a `Server` model, on a `VirtualClock`: `run_search(SimulatedLoad(...), ...)`
runs the same steps, looks and waits as a real run, thousands of simulated seconds per real
second. The server is a FIFO queue with `slots` parallel slots:

- service times fixed (M/D/C) or gamma-distributed with a coefficient of variation (M/G/C;
  cv 1 is exponential, M/M/C);
- a speed that wanders: drawn afresh every `wander_period_s`, log-normal with `wander_sd`
  (benchmarks/engine_drift.py measured 8.8 % minute to minute, uncorrelated, on the CPU engine);
- overload: requests beyond `queue_limit` waiting are refused at once (an HTTP error), and a
  request not done `timeout_s` after it was due times out (the client gives up, the server frees
  the slot).

Every draw comes from the seed, so a simulated search is reproducible to the bit.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import heapq
import itertools
import math
import random
from collections.abc import Iterator

import numpy as np

from llmcap.profile import SearchParams, Slo
from llmcap.rundir import ERROR_CODE, SAMPLE_DTYPE
from llmcap.traces import ArrivalTrace
from loadtest.arrivals import interarrival_gaps
from loadtest.clock import VirtualClock
from loadtest.estimate import run_estimate
from loadtest.search import SearchOutcome, run_search

DRAIN_POLL_S = 0.3  # as RunnerLoad.drain polls


@dataclasses.dataclass(frozen=True)
class Server:
    slots: int
    service_s: float  # mean service time at full speed
    service_cv: float = 0.0  # 0: fixed (M/D/C); else gamma with this coefficient of variation
    overhead_s: float = 0.004  # added to every answer outside the queue (the stub's HTTP cost)
    wander_sd: float = 0.0  # the speed's log-normal spread from period to period
    wander_period_s: float = 60.0
    queue_limit: int | None = None  # waiting requests past this are refused
    timeout_s: float | None = None  # a request not done this long after it was due times out
    seed: int = 0

    def speed(self, t_s: float) -> float:
        """The server's speed (1: nominal) during the period holding `t_s`."""
        if self.wander_sd <= 0:
            return 1.0
        return _speed(self.seed, self.wander_sd, math.floor(t_s / self.wander_period_s))


@functools.lru_cache(maxsize=4096)
def _speed(seed: int, sd: float, period: int) -> float:
    z = random.Random(seed * 1_000_003 + period).gauss(0.0, 1.0)
    return math.exp(sd * z - sd**2 / 2)  # mean speed 1


class Queue:
    """The server's state: when each slot is next free, who waits. `admit` answers one request."""

    def __init__(self, server: Server, seed: int = 0):
        self.server = server
        self.free = [-math.inf] * server.slots
        self.starts: collections.deque[float] = collections.deque()  # of requests not yet started
        # a stream of its own: seeded like the arrivals, exponential service would repeat their gaps
        self.rng = random.Random(f"service {seed}")
        if server.service_cv > 0:
            self.shape = 1.0 / server.service_cv**2

    def service_time(self, start_s: float) -> float:
        s = self.server
        base = s.service_s if s.service_cv <= 0 else self.rng.gammavariate(self.shape, s.service_s / self.shape)
        return base / s.speed(start_s)

    def admit(self, due_s: float) -> tuple[float, float, int]:
        """(start, end, error code) of a request due at `due_s`; requests come in time order."""
        s = self.server
        while self.starts and self.starts[0] <= due_s:
            self.starts.popleft()
        if s.queue_limit is not None and len(self.starts) >= s.queue_limit:
            return due_s, due_s + s.overhead_s, ERROR_CODE["http_status"]
        start = max(due_s, self.free[0])
        deadline = due_s + s.timeout_s if s.timeout_s is not None else math.inf
        if start >= deadline:
            return deadline, deadline, ERROR_CODE["timeout"]  # gave up before its turn: no slot used
        done = start + self.service_time(start)
        heapq.heapreplace(self.free, min(done, deadline))
        if start > due_s:
            self.starts.append(start)
        if done > deadline:
            return start, deadline, ERROR_CODE["timeout"]
        return start, done + s.overhead_s, 0


def serve(arrivals_s: np.ndarray, server: Server, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, error code) of each of the arrivals (sorted), through one Queue."""
    if _fixed_service(server):
        start = fifo_fixed_starts(arrivals_s, server.slots, server.service_s)
        return start, start + server.service_s + server.overhead_s, np.zeros(len(start), int)
    q = Queue(server, seed)
    out = np.array([q.admit(t) for t in arrivals_s.tolist()], dtype=float).reshape(-1, 3)
    return out[:, 0], out[:, 1], out[:, 2].astype(int)


def _fixed_service(server: Server) -> bool:
    """M/D/C with nothing refused, timed out or wandering: a request's start has a closed form."""
    s = server
    return s.service_cv <= 0 and s.wander_sd <= 0 and s.queue_limit is None and s.timeout_s is None


def fifo_fixed_starts(arrivals_s: np.ndarray, slots: int, service_s: float) -> np.ndarray:
    """Each start in a FIFO queue of `slots` slots and a fixed service time, without a loop: ends
    come in arrival order, so request k takes the slot request k - slots leaves, start_k =
    max(a_k, start_(k-slots) + S): per residue class a Lindley recursion, solved as
    j·S + the running maximum of a_i - i·S."""
    start = np.empty(len(arrivals_s))
    for r in range(slots):
        offsets_s = np.arange(len(arrivals_s[r::slots])) * service_s
        start[r::slots] = offsets_s + np.maximum.accumulate(arrivals_s[r::slots] - offsets_s)
    return start


class SimulatedLoad:
    """The search's `Load` over a simulated server, in virtual time (see the module's docstring).

    Requests are answered as they are due (a FIFO queue's answer is known at its arrival), so a
    step's samples are exact at any virtual moment: finished are those whose end has passed.
    The generator keeps its schedule (sent when due) and spends `cpu_ms_per_request` of its CPU
    on each request."""

    def __init__(
        self,
        server: Server,
        arrival: str = "poisson",
        trace: ArrivalTrace | None = None,
        seed: int = 0,
        cpu_ms_per_request: float = 0.5,
        clock: VirtualClock | None = None,
    ):
        self.clock = clock or VirtualClock()
        self.server, self.arrival, self.trace = server, arrival, trace
        self.queue = Queue(server, seed)
        self.arrival_rng = random.Random(seed)
        self.cpu_ms_per_request = cpu_ms_per_request
        self.due: list[float] = []  # every request, in the order due
        self.end: list[float] = []
        self.error: list[int] = []
        self.rate_rps = 0.0
        self.gaps: Iterator[float] = iter(())
        self.next_due = math.inf
        self.users: list[float] = []  # closed loop: when each of the N users sends next
        self.step_first = 0  # the first request of the current step

    # --- the Load protocol ------------------------------------------------------------------

    def set_rate(self, rate_rps: float) -> None:
        t = self._advance()
        self.users = []  # a closed loop ends too
        self.rate_rps = rate_rps
        if rate_rps > 0:
            self.gaps = interarrival_gaps(rate_rps, self.arrival, self.arrival_rng, self.trace)
            self.next_due = t + next(self.gaps)
        else:
            self.gaps, self.next_due = iter(()), math.inf

    def set_concurrency(self, n: int) -> None:
        t = self._advance()
        self.gaps, self.next_due, self.rate_rps = iter(()), math.inf, 0.0
        self.users = [t] * n
        self._advance()

    def discard_queued(self) -> None:
        pass  # the generator keeps no backlog: every request is sent when due

    def begin_step(self, window_start_s: float) -> None:
        self._advance()
        self.step_first = len(self.due)

    def step_so_far(self):
        t = self._advance()
        s = self._samples(self.step_first)
        done = s["end_s"] <= t
        return s[done], s["scheduled_s"][~done], t

    def wait_settled(self, before_s: float, timeout_s: float) -> None:
        t = self._advance()
        last = bisect.bisect_left(self.due, before_s)
        ends = self.end[self.step_first : last]
        target = min(max(ends, default=t), t + timeout_s)
        self.clock.sleep(target - t)

    def drain(self, timeout_s: float) -> None:
        deadline = self.clock.now() + timeout_s
        while self.clock.now() < deadline:
            self.clock.sleep(DRAIN_POLL_S)
            t = self._advance()
            if max(self.end[self.step_first :], default=-math.inf) <= t:
                break

    def window(self):
        t = self._advance()
        s = self._samples(self.step_first)
        return s[s["end_s"] <= t], np.zeros(0, np.float32)

    def cpu_percent(self, start_s: float, end_s: float) -> float:
        lo, hi = bisect.bisect_left(self.due, start_s), bisect.bisect_left(self.due, end_s)
        seconds = max(end_s - start_s, 1e-9)
        return (hi - lo) / seconds * self.cpu_ms_per_request / 10.0  # ms per second -> percent

    # --- the simulation -----------------------------------------------------------------------

    def _advance(self) -> float:
        """Admit every request due up to now."""
        t = self.clock.now()
        while self.next_due <= t:
            self._admit(self.next_due)
            self.next_due += next(self.gaps)
        while self.users and self.users[0] <= t:
            due = self.users[0]
            end = self._admit(due)
            heapq.heapreplace(self.users, end)  # the user sends its next request at once
        return t

    def _admit(self, due_s: float) -> float:
        _, end, error = self.queue.admit(due_s)
        self.due.append(due_s)
        self.end.append(end)
        self.error.append(error)
        return end

    def _samples(self, first: int) -> np.ndarray:
        s = np.zeros(len(self.due) - first, SAMPLE_DTYPE)
        s["scheduled_s"] = s["issued_s"] = s["sent_s"] = self.due[first:]
        s["end_s"] = self.end[first:]
        s["first_token_s"] = s["end_s"]  # one chunk: the first token is the answer
        s["error"] = self.error[first:]
        s["status"] = np.where(s["error"] == 0, 200, 0)
        s["prompt_tokens"], s["completion_tokens"] = 64, 16
        return s


def simulate_search(
    server: Server,
    params: SearchParams,
    slo: Slo,
    seed: int,
    arrival: str = "poisson",
    trace: ArrivalTrace | None = None,
    request_timeout_s: float = 60.0,
) -> tuple[SearchOutcome, float]:
    """One shipped search (`run_search`) of `server` in virtual time: (its outcome, the simulated
    seconds it took). The seed sets the arrivals, the service draws and the server's wandering."""
    load = SimulatedLoad(dataclasses.replace(server, seed=seed), arrival, trace, seed=seed)
    search = run_estimate if params.method == "estimate" else run_search
    outcome = search(load, params, slo, request_timeout_s)
    return outcome, load.clock.now()


def fraction_over(
    server: Server, rate_rps: float, bound_s: float, n: int, seed: int = 0, arrival: str = "poisson", trace=None
) -> float:
    """The long-run fraction of `n` requests at `rate_rps` that take longer than `bound_s` or fail
    (`bound_s` infinite: the fraction that fail)."""
    gaps = interarrival_gaps(rate_rps, arrival, random.Random(seed), trace)
    warmup = n // 20
    if _fixed_service(server):
        arrivals_s = np.cumsum(np.fromiter(itertools.islice(gaps, n + warmup), float, n + warmup))
        ends_s = serve(arrivals_s, server)[1]
        return int(np.count_nonzero((ends_s - arrivals_s)[warmup:] > bound_s)) / n
    queue, t, over = Queue(dataclasses.replace(server, seed=seed), seed), 0.0, 0
    for i in range(n + warmup):
        t += next(gaps)
        _, end, error = queue.admit(t)
        if i >= warmup and (error or end - t > bound_s):
            over += 1
    return over / n


def knee_rps(
    server: Server,
    bound_s: float,
    allowed_fraction: float,
    n: int,
    low_rps: float,
    high_rps: float,
    seed: int = 0,
    arrival: str = "poisson",
    trace=None,
    iterations: int = 12,
) -> float:
    """The true knee: the rate at which the long-run fraction over `bound_s` (from `n` requests,
    the same draws at every rate) crosses `allowed_fraction`, by bisection inside [low, high]."""
    for _ in range(iterations):
        mid = (low_rps + high_rps) / 2
        if fraction_over(server, mid, bound_s, n, seed, arrival, trace) <= allowed_fraction:
            low_rps = mid
        else:
            high_rps = mid
    return (low_rps + high_rps) / 2
