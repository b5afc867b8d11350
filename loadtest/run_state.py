"""The state of one load test in one process, kept on Locust's environment (`environment.llmcap`)
as Locust keeps its own (runner, stats) there: the plugin's listeners fill it, users read it."""

from __future__ import annotations

import dataclasses
import subprocess
from typing import TYPE_CHECKING

import gevent
import gevent.event

from llmcap.errors import ExitCode

if TYPE_CHECKING:
    from loadtest.console import ProgressFile
    from loadtest.datasets import Prompts
    from loadtest.process import Collector, LoadProcess
    from loadtest.search import SearchOutcome
    from loadtest.settings import RunSettings


@dataclasses.dataclass
class RunState:
    settings: RunSettings = None  # type: ignore[assignment]  # set by init before anything reads it
    prompts: Prompts = None  # type: ignore[assignment]
    bodies: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)  # head, tail (bodies.py)
    process: LoadProcess = None  # type: ignore[assignment]  # the local runner's or a worker's
    collector: Collector = None  # type: ignore[assignment]  # the master's or the local runner's
    controller: gevent.Greenlet | None = None
    scraper: subprocess.Popen | None = None  # the telemetry scraper's process
    progress: ProgressFile = None  # type: ignore[assignment]
    pending_rps: float | None = None  # a worker's rate, set by the master (maybe before init is done)
    pending_share: float = 1.0  # the worker's share of the total rate (a trace's time scale needs the total)
    pending_concurrency: int | None = None  # or its share of a closed loop's open requests
    steps: list[dict] = dataclasses.field(default_factory=list)  # judged so far (the web UI's tab reads them)
    outcome: SearchOutcome | None = None  # the answer, once there is one
    report_written: bool = False
    done: bool = False
    interrupted: bool = False
    exit_code: ExitCode = ExitCode.OK
    # A worker's runner takes spawn messages while `init` still waits on the network
    # (resolving the model), so users wait for this before they touch the process state
    ready: gevent.event.Event = dataclasses.field(default_factory=gevent.event.Event)


def state_of(environment) -> RunState:
    state = getattr(environment, "llmcap", None)
    if state is None:
        state = environment.llmcap = RunState()
    return state
