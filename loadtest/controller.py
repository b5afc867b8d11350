"""The controller: one greenlet on the master (or the local runner) that runs the rate search,
or the fixed-rate step, through the runner, and writes each step and the result."""

from __future__ import annotations

import gevent
from locust.runners import MasterRunner

from llmcap.confidence import FAIL
from llmcap.errors import ExitCode
from llmcap.log import get_logger
from llmcap.rundir import TELEMETRY_DIR, append_step, read_samples
from loadtest import console
from loadtest.clock import REAL, Clock, now
from loadtest.closed_loop import run_levels
from loadtest.estimate import run_estimate
from loadtest.result import write_result
from loadtest.run_state import RunState, state_of
from loadtest.search import SearchOutcome, run_search, run_step
from loadtest.server_api import server_queue_empty
from serving.telemetry import process_tree, server_summary

log = get_logger()

RATE_MESSAGE, BATCH_MESSAGE, DISCARD_MESSAGE = "llmcap_rate", "llmcap_batch", "llmcap_discard"
CONCURRENCY_MESSAGE = "llmcap_concurrency"


class RunnerLoad:
    """The controller's handle on the load, local or distributed (see search.Load)."""

    clock: Clock = REAL

    def __init__(self, environment):
        self.state: RunState = state_of(environment)
        self.runner = environment.runner
        self.rate_rps = 0.0
        self.concurrency: int | None = None  # a closed loop's requests kept open (None: open loop)
        self._split = None

    def set_rate(self, rate_rps: float) -> None:
        self.rate_rps, self.concurrency = rate_rps, None
        self._apply()

    def set_concurrency(self, n: int) -> None:
        self.rate_rps, self.concurrency = 0.0, n
        self._apply()

    def discard_queued(self) -> None:
        if isinstance(self.runner, MasterRunner):
            self.runner.send_message(DISCARD_MESSAGE, {})
        else:
            self.state.process.discard_queued()

    def _apply(self) -> None:
        if isinstance(self.runner, MasterRunner):
            workers = max(self.runner.worker_count, 1)
            self._split = workers
            if self.concurrency is None:
                self.runner.send_message(RATE_MESSAGE, {"rps": self.rate_rps / workers, "share": 1 / workers})
            else:
                # worker i keeps its share open: the shares add up to n exactly
                live = self.runner.clients.ready + self.runner.clients.spawning + self.runner.clients.running
                for i, client_id in enumerate(sorted(node.id for node in live)):
                    share = self.concurrency // workers + (1 if i < self.concurrency % workers else 0)
                    self.runner.send_message(CONCURRENCY_MESSAGE, {"n": share}, client_id=client_id)
        elif self.concurrency is None:
            self.state.process.dispatcher.set_rate(self.rate_rps)
        else:
            self.state.process.dispatcher.set_concurrency(self.concurrency)

    def keep_split(self) -> None:
        # workers joined or left: re-split the total rate
        if isinstance(self.runner, MasterRunner) and self._split != max(self.runner.worker_count, 1):
            self._apply()

    def begin_step(self, window_start_s: float) -> None:
        self.state.collector.begin_step(window_start_s)

    def step_so_far(self):
        self.keep_split()
        return self.state.collector.step_so_far()

    def wait_settled(self, before_s: float, timeout_s: float) -> None:
        deadline = self.clock.now() + timeout_s
        while not self.state.collector.settled(before_s) and self.clock.now() < deadline:
            self.keep_split()
            self.clock.sleep(0.2)

    def drain(self, timeout_s: float) -> None:
        deadline = self.clock.now() + timeout_s
        metrics_url = self.state.settings.metrics_url
        while self.clock.now() < deadline:
            self.clock.sleep(0.3)
            if self.state.collector.in_flight() == 0 and server_queue_empty(metrics_url):
                return

    def window(self):
        return read_samples(self.state.settings.run_dir)

    def cpu_percent(self, start_s: float, end_s: float) -> float:
        return self.state.collector.cpu_percent(start_s, end_s)


def _wait_for_pool(environment, state: RunState, timeout_s: float = 60.0) -> None:
    runner = environment.runner
    deadline = now() + timeout_s
    target = state.settings.pool_size
    while runner.user_count < target and now() < deadline:
        gevent.sleep(0.2)


def control(environment) -> None:
    state = state_of(environment)
    settings = state.settings
    load = RunnerLoad(environment)

    def on_step(step: dict) -> None:
        run_dir = settings.run_dir
        state.progress.step_done(step)
        pids = process_tree(settings.server_pid) if settings.server_pid else None
        step["server"] = server_summary(run_dir / TELEMETRY_DIR, step["start"], step["end"], pids)
        append_step(run_dir, step)
        state.steps.append(step)
        console.step_line(step)

    try:
        _wait_for_pool(environment, state)
        started = now()
        if settings.concurrency:
            outcome = run_levels(
                load,
                settings.concurrency,
                settings.duration,
                settings.search.warmup_seconds,
                settings.slo,
                settings.search.confidence,
                settings.request.timeout_s,
                settings.search.max_lateness_ms,
                on_step=on_step,
                on_tick=state.progress.tick,
            )
        elif settings.rps is not None:
            line = console.LiveLine(state.collector, settings)

            def ticker(info: dict) -> None:  # the live line, and progress for whoever watches
                line.tick(info)
                state.progress.tick(info)

            step = run_step(
                load,
                settings.rps,
                settings.duration,
                settings.duration,
                0.0,
                settings.slo,
                settings.search.confidence,
                settings.request.timeout_s,
                settings.search.max_lateness_ms,
                on_tick=ticker,
            )
            step["index"] = 0
            on_step(step)
            outcome = fixed_outcome(step)
        else:
            search = run_estimate if settings.search.method == "estimate" else run_search
            outcome = search(
                load,
                settings.search,
                settings.slo,
                settings.request.timeout_s,
                on_step=on_step,
                on_tick=state.progress.tick,
            )
        state.exit_code = exit_code_of(outcome)
        write_result(settings, outcome, started, partial=False)
        state.outcome = outcome
        console.final(outcome, settings)
        if settings.result_json:
            console.result_json(settings.run_dir)
        if environment.web_ui is not None and settings.write_report:
            # the web UI stays up after the run: its tab links the report now, not at quit
            write_report_once(state)
    except gevent.GreenletExit:
        raise
    except Exception:
        log.exception("the controller failed")
        state.exit_code = ExitCode.FAILED
    finally:
        state.done = True


def write_report_once(state: RunState) -> None:
    """The run's report, at the end of the run (web UI) or at quit, whichever comes first."""
    if state.report_written:
        return
    from reports.report import write_report  # the report's plotting stack only where one is written

    try:
        write_report(state.settings.run_dir)
        state.report_written = True
    except Exception as e:  # a report problem must not cost the measurement
        log.error(f"report failed: {type(e).__name__}: {e}")


def fixed_outcome(step: dict) -> SearchOutcome:
    return SearchOutcome(
        [step],
        step["offered_rps"] if step["passed"] else None,
        None if step["passed"] else step["offered_rps"],
        confirmed=step["passed"],
        generator_bottleneck=step["reason"] if step["generator_bottleneck"] else None,
        mode="fixed",
        interval_low_rps=step["offered_rps"] if step["passed"] else None,
        confidence=step["confidence"],
    )


def exit_code_of(outcome: SearchOutcome) -> ExitCode:
    if outcome.generator_bottleneck:
        return ExitCode.GENERATOR_BOTTLENECK
    if outcome.mode == "fixed":  # a CI gate: only a failure decided with confidence fails it
        return ExitCode.NO_CAPACITY if outcome.steps[-1]["decision"] == FAIL else ExitCode.OK
    if outcome.mode == "concurrency":
        return ExitCode.OK
    return ExitCode.OK if outcome.max_sustained_rps else ExitCode.NO_CAPACITY
