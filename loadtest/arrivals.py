"""Open-loop arrivals: when requests are due, decided by nobody who waits for a response.

One `Dispatcher` per load-generating process draws arrival times on an absolute
schedule at that process's share of the target rate and puts a ticket
(sequence number, scheduled time) on a queue. Users take tickets; a user never
decides when to send, so a slow server cannot slow the offered load down
(no coordinated omission). The sum of independent Poisson streams is Poisson,
so N processes each at rate/N offer a Poisson stream at the full rate.

Sessions (`turns` > 1, loadtest/sessions.py): the dispatcher issues session starts at rate/turns, so
the requests of all turns together arrive at the rate set; a session's later turns are due a think
time after the previous answer (`follow_up`), as a person in a chat would send them.

The closed loop (`set_concurrency`) is the other view of a server: N requests always open, each
finished one replaced at once, so the server's speed sets the rate. Its tickets are due when they
are issued, and latency counts from then as in the open loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import gevent
from gevent.event import Event
from gevent.queue import Queue

from llmcap.profile import ARRIVAL_KINDS
from llmcap.traces import ArrivalTrace
from loadtest.clock import now

KINDS = ARRIVAL_KINDS
BLOCK_S = 2.0


def interarrival_gaps(
    rate_rps: float, kind: str, rng: random.Random, trace: ArrivalTrace | None = None, share: float = 1.0
):
    """Endless seconds between arrivals.

    "poisson" (the default): the textbook Poisson process, independent exponential gaps, as
    real users arrive. A window's count varies (at 30 req/s over 10 s, by 6 % at one sigma);
    the verdict's statistics carry that noise, the traffic does not hide it.
    "poisson-blocked": a Poisson process conditioned on its expected count in each ~2 s block
    (uniform order statistics within a block). Smoother than real traffic: it removes the slow
    swings that build queues at high utilization, so a server looks stronger than it is
    (docs/arrivals.md measures how much). Kept only to reproduce earlier runs.
    "constant": evenly spaced.
    "trace": a recorded trace's shape (trace_gaps); this process carries `share` of the total.
    """
    if kind == "trace":
        if trace is None:
            raise ValueError("arrival 'trace' needs a trace file (--trace)")
        yield from trace_gaps(trace, rate_rps / share, share, rng)
    elif kind == "constant":
        while True:
            yield 1.0 / rate_rps
    elif kind == "poisson":
        while True:
            yield rng.expovariate(rate_rps)
    elif kind == "poisson-blocked":
        k = max(8, round(rate_rps * BLOCK_S))
        block_s = k / rate_rps
        tail_s = 0.0  # from the previous block's last arrival to the end of that block
        while True:
            # k+1 exponentials normalised to the block: positions of k uniform order statistics
            draws = [rng.expovariate(1.0) for _ in range(k + 1)]
            scale = block_s / sum(draws)
            yield tail_s + draws[0] * scale
            for d in draws[1:k]:
                yield d * scale
            tail_s = draws[k] * scale
    else:
        raise ValueError(f"arrival kind must be one of {', '.join(KINDS)}, not {kind!r}")


def trace_gaps(trace: ArrivalTrace, total_rps: float, share: float, rng: random.Random) -> Iterator[float]:
    """A trace played `total_rps / trace.mean_rps` times faster (so its mean rate is `total_rps`), from
    its start, in a loop. Arrival times are replayed as recorded; counts per bin are arrivals of a
    Poisson process whose rate is constant within each bin (a non-homogeneous Poisson process: the
    trace's shape, real traffic's randomness within it). With several processes each keeps every
    arrival with probability `share`, so together they play the trace once."""
    speedup = total_rps / trace.mean_rps
    period_s = trace.duration_s / speedup
    last = offset = 0.0
    while True:
        if trace.times_s is not None:
            for t in trace.times_s:
                if share >= 1 or rng.random() < share:
                    at = offset + t / speedup
                    yield at - last
                    last = at
        else:
            bin_wall_s = trace.bin_s / speedup
            for k, count in enumerate(trace.counts or []):
                rate = count * share / bin_wall_s
                at, end = offset + k * bin_wall_s, offset + (k + 1) * bin_wall_s
                while rate > 0:
                    at += rng.expovariate(rate)
                    if at >= end:
                        break  # memoryless: the next bin starts afresh at its own rate
                    yield at - last
                    last = at
        offset += period_s


class Dispatcher:
    """Issues tickets at `rate_rps` (changeable at any time) into `tickets`."""

    def __init__(self, kind: str = "poisson", seed: int = 0, trace: ArrivalTrace | None = None, turns: int = 1):
        if kind not in KINDS:
            raise ValueError(f"arrival kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.trace = trace
        self.share = 1.0  # of the total rate, carried by this process (a trace's time scale needs the total)
        self.rng = random.Random(seed)
        self.rate_rps = 0.0
        self.tickets: Queue = Queue()
        self.issued = 0
        self._changed = Event()
        self._greenlet: gevent.Greenlet | None = None
        self.idle_users = 0
        # closed loop: how many requests to keep open (None: open loop), and how many are
        self.concurrency: int | None = None
        self.in_loop = 0
        self.turns = turns  # requests per session: starts are issued at rate / turns
        self.epoch = 0  # counts every change of load: a session from an earlier one stops
        self.on_issue: Callable[[int, float], None] | None = None  # callback(seq, scheduled_s), set by the owner

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def take(self) -> tuple[int, float, float, bool]:
        """Block until a request is due; return its ticket (seq, scheduled_s, issued_s, queued)."""
        self.idle_users += 1
        try:
            return self.tickets.get()
        finally:
            self.idle_users -= 1

    def set_rate(self, rate_rps: float, share: float = 1.0) -> None:
        """Open loop at `rate_rps`, this process's `share` of the total (0: stop issuing; a closed
        loop ends too)."""
        self.concurrency, self.in_loop = None, 0  # a closed loop's open requests are no longer replaced
        self.rate_rps = max(0.0, float(rate_rps))
        self.share = share
        self.epoch += 1
        self._changed.set()

    def set_concurrency(self, n: int) -> None:
        """Closed loop: keep `n` requests open. Raising n issues the difference at once; lowering it
        lets the surplus finish without replacement."""
        self.rate_rps = 0.0
        self._changed.set()
        self.epoch += 1
        self.concurrency = max(0, int(n))
        while self.in_loop < self.concurrency:
            self.in_loop += 1
            self._issue(now())

    def finished(self) -> None:
        """A request of the closed loop ended: replace it, unless n was lowered (or the loop ended)."""
        if self.concurrency is None:
            return
        if self.in_loop > self.concurrency:
            self.in_loop -= 1
        else:
            self._issue(now(), queued=False)  # the user that just finished takes it

    def follow_up(self, due: float) -> tuple[int, float, float, bool]:
        """A ticket for a session's next turn, due at `due`, taken by the session's own user."""
        self.issued += 1
        if self.on_issue is not None:
            self.on_issue(self.issued, due)
        return (self.issued, due, now(), False)

    def _issue(self, due: float, queued: bool | None = None) -> None:
        self.issued += 1
        if queued is None:
            # more tickets waiting than idle users: this one waits for a free user
            queued = self.tickets.qsize() >= self.idle_users
        if self.on_issue is not None:
            self.on_issue(self.issued, due)
        self.tickets.put_nowait((self.issued, due, now(), queued))

    def discard_queued(self) -> list[int]:
        """Drop the tickets no user has taken yet (the pool was exhausted) and return their numbers.
        A step whose verdict is in must not leave them to be sent into the next step: an overload's
        backlog would make every following step look overloaded too."""
        dropped = []
        while not self.tickets.empty():
            dropped.append(self.tickets.get_nowait()[0])
        self.in_loop = max(0, self.in_loop - len(dropped))
        return dropped

    def _run(self) -> None:
        while True:
            self._changed.clear()
            rate = self.rate_rps
            if rate <= 0:
                self._changed.wait()
                continue
            gaps = interarrival_gaps(rate / self.turns, self.kind, self.rng, self.trace, self.share)
            due = now()
            while not self._changed.is_set():
                due += next(gaps)
                delay = due - now()
                if delay > 0 and self._changed.wait(delay):
                    break  # new rate: restart the schedule from now
                if self._changed.is_set():
                    break  # changed as the wait timed out: that due time belongs to the old schedule
                self._issue(due)
