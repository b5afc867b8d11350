"""Per-process load generation state, and the master-side collector of its samples.

Each load-generating process (the local runner, or each worker) has one
`LoadProcess`: its dispatcher, the requests it has open, and the samples it has
not yet delivered. Every `FLUSH_S` it delivers one batch (numpy bytes plus a
little bookkeeping) to the `Collector`: directly in a local run, as a Locust
message in a distributed one. The collector is the only writer of the run
directory and knows, per process, which requests are still open, which is how a
step knows its window's requests are all in.
"""

from __future__ import annotations

import os
import time
from array import array

import gevent
import numpy as np

from llmcap.rundir import ERROR_KINDS, SAMPLE_DTYPE, SampleWriter
from loadtest.arrivals import Dispatcher
from loadtest.clock import now

FLUSH_S = 0.5


class LoadProcess:
    def __init__(self, dispatcher: Dispatcher, deliver, worker_index=lambda: 0):
        self.dispatcher = dispatcher
        dispatcher.on_issue = self._on_issue
        self.deliver = deliver
        # Locust assigns a worker its index only once the master has acknowledged it
        self.worker_index = worker_index
        self.source = os.getpid()
        self.open: dict[int, float] = {}
        self._rows: list[tuple] = []
        self._gaps = array("f")
        self._errors: list[list] = []
        self._texts: list[list] = []  # [index in batch, completion text], only with --store-text
        self._flusher: gevent.Greenlet | None = None
        # this process's own CPU use since the last batch (Locust samples it only every 10 s)
        self._cpu_mark = (time.perf_counter(), time.process_time())
        self._worker = 0

    def _on_issue(self, seq: int, scheduled_s: float) -> None:
        self.open[seq] = scheduled_s

    def discard_queued(self) -> int:
        """Drop the tickets still waiting for a free user (never sent: no sample is lost)."""
        dropped = self.dispatcher.discard_queued()
        for seq in dropped:
            self.open.pop(seq, None)
        return len(dropped)

    def record(self, ticket: tuple, prompt_hash: int, r, turn: int = 0) -> None:
        """Called once per finished request, on the hot path: append a tuple, nothing more."""
        seq, scheduled_s, issued_s, queued = ticket
        self.open.pop(seq, None)
        if self.dispatcher.concurrency is not None:
            self.dispatcher.finished()
        gaps = r.itl_ms
        if r.error:
            self._errors.append([len(self._rows), ERROR_KINDS[r.error], r.message])
        if r.text is not None:
            self._texts.append([len(self._rows), "".join(r.text)])
        self._rows.append(
            (
                scheduled_s,
                issued_s,
                r.sent_s,
                r.first_token_s,
                r.end_s,
                r.status,
                r.error,
                queued,
                r.prompt_tokens,
                r.completion_tokens,
                len(gaps),
                prompt_hash,
                self._worker,
                turn,
            )
        )
        self._gaps.extend(gaps)

    def start(self) -> None:
        self.dispatcher.start()
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_forever)

    def stop(self) -> None:
        self.dispatcher.stop()
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
        self.flush()

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_S)
            self.flush()

    def flush(self) -> None:
        self._worker = max(int(self.worker_index()), 0)
        rows, gaps, errors, texts = self._rows, self._gaps, self._errors, self._texts
        self._rows, self._gaps, self._errors, self._texts = [], array("f"), [], []
        t = now()
        wall0, cpu0 = self._cpu_mark
        self._cpu_mark = wall1, cpu1 = time.perf_counter(), time.process_time()
        cpu_percent = 100.0 * (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else 0.0
        open_ = self.open
        self.deliver(
            {
                "source": self.source,
                "worker": self._worker,
                "t": t,
                "samples": np.array(rows, dtype=SAMPLE_DTYPE).tobytes() if rows else b"",
                "itl": gaps.tobytes(),
                "errors": errors,
                "texts": texts,
                "issued": self.dispatcher.issued,
                "open": len(open_),
                "oldest_open_s": min(open_.values()) if open_ else None,
                # when each open request was due: a step's look counts one open past its bound as over
                "open_scheduled": np.fromiter(open_.values(), dtype="<f8", count=len(open_)).tobytes(),
                "rate_rps": self.dispatcher.rate_rps,
                "cpu_percent": cpu_percent,
            }
        )


class Collector:
    """Receives batches from every load-generating process and appends them to the run directory."""

    RECENT_S = 10.0
    STALE_S = 5.0

    def __init__(self, writer: SampleWriter):
        self.writer = writer
        self.sources: dict[int, dict] = {}
        self.recent: list[np.ndarray] = []  # for the once-a-second console line only
        self.cpu: list[tuple[float, int, float]] = []  # (t, worker, cpu %) of every batch
        self.total = 0
        # the current step's samples, kept in memory for its looks (cleared each step)
        self.step_start_s: float | None = None
        self.step: list[np.ndarray] = []

    def begin_step(self, start_s: float | None) -> None:
        self.step_start_s, self.step = start_s, []

    def add(self, batch: dict) -> None:
        samples = np.frombuffer(batch["samples"], dtype=SAMPLE_DTYPE)
        itl = np.frombuffer(batch["itl"], dtype="<f4")
        self.writer.append(samples, itl, batch["errors"], batch.get("texts"))
        self.total += len(samples)
        if self.step_start_s is not None and len(samples):
            self.step.append(samples[samples["scheduled_s"] >= self.step_start_s])
        meta = {k: v for k, v in batch.items() if k not in ("samples", "itl", "errors", "texts")}
        meta["received"] = now()
        self.sources[batch["source"]] = meta
        self.cpu.append((batch["t"], batch["source"], batch["cpu_percent"]))
        if len(samples):
            self.recent.append(samples)
            horizon = now() - self.RECENT_S
            while self.recent and self.recent[0]["end_s"].max() < horizon:
                self.recent.pop(0)

    def settled(self, before_s: float) -> bool:
        """Every live process has reported after `before_s` with nothing scheduled before it still open.
        A process silent for STALE_S is gone (a worker that died or left) and is not waited for."""
        live = [s for s in self.sources.values() if s["received"] > now() - self.STALE_S]
        if not live:
            return False
        return all(
            s["t"] > before_s + 2 * FLUSH_S and (s["oldest_open_s"] is None or s["oldest_open_s"] >= before_s)
            for s in live
        )

    def step_so_far(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(finished samples of this step, scheduled times of requests still open, as of when).
        As of the oldest live process's last batch: each batch is one consistent snapshot of
        that process (finished and open), so a request due before then is in one or the other."""
        live = [s for s in self.sources.values() if s["received"] > now() - self.STALE_S]
        finished = np.concatenate(self.step) if self.step else np.zeros(0, SAMPLE_DTYPE)
        if not live:
            return finished, np.zeros(0), float("-inf")
        open_ = np.concatenate([np.frombuffer(s.get("open_scheduled", b""), dtype="<f8") for s in live])
        return finished, open_, min(s["t"] for s in live)

    def in_flight(self) -> int:
        return sum(s["open"] for s in self.sources.values() if s["received"] > now() - self.STALE_S)

    def recent_samples(self) -> np.ndarray:
        return np.concatenate(self.recent) if self.recent else np.zeros(0, SAMPLE_DTYPE)

    def cpu_percent(self, start_s: float, end_s: float) -> float:
        """Mean CPU use over [start_s, end_s] of the busiest load-generating process."""
        by_worker: dict[int, list[float]] = {}
        for t, worker, cpu in self.cpu:
            if start_s <= t <= end_s:
                by_worker.setdefault(worker, []).append(cpu)
        self.cpu = [row for row in self.cpu if row[0] >= start_s]  # older steps are judged already
        return max((sum(v) / len(v) for v in by_worker.values()), default=0.0)
