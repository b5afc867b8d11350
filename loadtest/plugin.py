"""The wiring: llmcap's listeners on Locust's events, registered when a locustfile imports
`loadtest.machinery`. Custom arguments (`init_command_line_parser`), per-process set-up
(`init`), the controller on the master or local runner (`test_start`), the result, report
and exit code (`quitting`). State lives on the environment (`loadtest.run_state`)."""

from __future__ import annotations

import json
import os
import signal
import sys

import gevent
import greenlet
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from llmcap.errors import BadInput, ExitCode
from llmcap.log import get_logger
from llmcap.rundir import PROMPTS_FILE, TELEMETRY_DIR, SampleWriter, write_synthetic_lengths
from loadtest import console, exporter, synthetic_prompts, webui
from loadtest.arrivals import Dispatcher
from loadtest.bodies import build_bodies
from loadtest.controller import (
    BATCH_MESSAGE,
    CONCURRENCY_MESSAGE,
    DISCARD_MESSAGE,
    RATE_MESSAGE,
    control,
    write_report_once,
)
from loadtest.datasets import Task, load_prompts, reply_lengths
from loadtest.dialect import lists_served_model
from loadtest.process import Collector, LoadProcess
from loadtest.result import write_result
from loadtest.run_state import state_of
from loadtest.server_api import ServerTokenizer, resolve_model
from loadtest.settings import add_arguments, resolve
from loadtest.tasks import for_dataset
from serving import scraper

log = get_logger()


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT, quiet: bool = False):
    """Bad input: one line, no traceback, non-zero exit."""
    if not quiet:
        log.error(message)
    sys.exit(int(code))


def _lengths_from_replies(settings, prompts, model: str) -> None:
    """A ShareGPT file's replies, counted by the served model's tokenizer, set the output lengths."""
    tokenizer = ServerTokenizer(
        settings.host, model, api_key(settings), {}, settings.request.timeout_s, "ShareGPT reply lengths"
    )
    try:
        reply_lengths(prompts, lambda text: len(tokenizer.ids(text)))
    except BadInput as e:
        raise BadInput(f"{e}; --output-lengths fixed sends --max-tokens instead") from None


def api_key(settings) -> str | None:
    env = settings.request.api_key_env
    return os.environ.get(env) if env else None


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kw):
    add_arguments(parser)


def _task_of(user_classes) -> Task | None:
    return next((cls.task_spec for cls in user_classes if getattr(cls, "task_spec", None) is not None), None)


@events.init.add_listener
def _on_init(environment, **_kw):
    runner = environment.runner
    task = _task_of(environment.user_classes)
    if environment.parsed_options is None or task is None:
        return
    if not environment.parsed_options.locust_stats:
        # a quiet console: llmcap's step and live lines, not Locust's table of approximate percentiles
        environment.parsed_options.only_summary = True
    state = state_of(environment)
    is_worker = isinstance(runner, WorkerRunner)
    if is_worker:
        # before anything that waits on the network: the master may set the rate while this init still
        # resolves the model, and Locust drops a message that has no handler yet
        runner.register_message(
            RATE_MESSAGE, lambda msg, **kw: _on_rate(state, msg.data["rps"], msg.data.get("share", 1.0))
        )
        runner.register_message(CONCURRENCY_MESSAGE, lambda msg, **kw: _on_concurrency(state, msg.data["n"]))
        runner.register_message(DISCARD_MESSAGE, lambda msg, **kw: state.process and state.process.discard_queued())
    try:
        settings = resolve(environment.parsed_options, task.name)
        if not settings.host:
            raise BadInput("no host: pass -H http://HOST:PORT (the OpenAI-compatible server)")
        if not task.generated:
            prompts = load_prompts(
                for_dataset(task, settings.profile.dataset),
                settings.profile.dataset.path,
                seed=settings.search.seed,
                sample=settings.profile.dataset.sample,
            )
        engine = settings.profile.serving.engine
        model = resolve_model(settings.host, settings.model, api_key(settings), lists_served_model(engine))
        if task.generated:
            prompts = synthetic_prompts.generate(settings, model, api_key(settings))
        elif prompts.replies:
            _lengths_from_replies(settings, prompts, model)
        if not is_worker:
            try:
                writer = SampleWriter(settings.run_dir)
            except OSError as e:
                raise BadInput(f"{settings.run_dir}: cannot write the run directory ({e.strerror})") from None
            if settings.prometheus_port:
                exporter.serve(state, settings.prometheus_port, settings.prometheus_bind)
    except BadInput as e:
        fail(str(e), e.exit_code, quiet=is_worker)
    settings.profile.model.served_name = model
    if settings.result_json and not is_worker:
        console.send_lines_to_stderr()
    state.settings, state.prompts = settings, prompts
    state.bodies = build_bodies(prompts, model, settings.request, settings.profile.serving.engine)

    if not is_worker:
        _stop_signals_once()
        if settings.store_text:
            _write_prompts(settings.run_dir, prompts)
        if prompts.drawn_lengths:
            write_synthetic_lengths(
                settings.run_dir,
                [
                    {"prompt_hash": h, "input_tokens": i, "output_tokens": o}
                    for h, (i, o) in zip(prompts.hashes, prompts.drawn_lengths, strict=True)
                ],
            )
        state.collector = Collector(writer)
        webui.install(environment)
        state.progress = console.ProgressFile(settings.run_dir)
        console.banner(settings, len(prompts))
        targets = {"vllm": settings.metrics_url} if settings.metrics_url else {}
        if settings.gpu_metrics_url:
            targets["gpu"] = settings.gpu_metrics_url
        if targets:
            state.scraper = scraper.start(settings.run_dir / TELEMETRY_DIR, targets)
    if isinstance(runner, MasterRunner):
        runner.register_message(BATCH_MESSAGE, lambda msg, **kw: state.collector.add(msg.data))
        return
    # re-seeded per worker at start
    dispatcher = Dispatcher(
        settings.search.arrival,
        seed=settings.search.seed,
        trace=settings.arrival_trace,
        turns=settings.profile.sessions.turns,
    )
    if is_worker:
        deliver = lambda batch: runner.send_message(BATCH_MESSAGE, batch)  # noqa: E731
    else:
        deliver = state.collector.add
    state.process = LoadProcess(dispatcher, deliver, lambda: getattr(runner, "worker_index", 0))
    if state.pending_rps is not None:
        dispatcher.set_rate(state.pending_rps, state.pending_share)
    if state.pending_concurrency is not None:
        dispatcher.set_concurrency(state.pending_concurrency)
    state.ready.set()


def _on_rate(state, rps: float, share: float) -> None:
    state.pending_rps, state.pending_share, state.pending_concurrency = rps, share, None
    if state.process is not None:
        state.process.dispatcher.set_rate(rps, share)


def _on_concurrency(state, n: int) -> None:
    state.pending_rps, state.pending_concurrency = None, n
    if state.process is not None:
        state.process.dispatcher.set_concurrency(n)


def _stop_signals_once() -> None:
    """Headless Locust with a LoadTestShape runs the whole test inside start_automatic_run(), before it
    installs its own SIGTERM handler (locust 2.47 main.py), so SIGTERM would kill the process with no
    teardown: turn it into the Ctrl-C path, which stops the runner and fires `quitting`. And stop once:
    a Ctrl-C in a terminal reaches `llmcap plan` and this process both, and plan forwards its own; a
    second KeyboardInterrupt landing inside Locust's shutdown would end it before the partial result
    is written (seen on the GPU check, under `timeout -s INT`)."""
    main = greenlet.getcurrent()
    stopping: list[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            gevent.spawn(main.throw, KeyboardInterrupt)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)


def _write_prompts(run_dir, prompts) -> None:
    """--store-text: the requests themselves, once, keyed by the hash the samples carry."""
    with open(run_dir / PROMPTS_FILE, "w") as f:
        for h, request in zip(prompts.hashes, prompts.requests, strict=True):
            f.write(json.dumps({"prompt_hash": h, **request}) + "\n")


@events.test_start.add_listener
def _on_test_start(environment, **_kw):
    if _task_of(environment.user_classes) is None:
        return
    state = state_of(environment)
    if not isinstance(environment.runner, MasterRunner):
        # a worker's test can start (the master's spawn message) while its init still waits on the
        # network: start the load process once init is done, not never
        gevent.spawn(_start_process, environment, state)
    if state.settings is not None and not isinstance(environment.runner, WorkerRunner) and state.controller is None:
        state.controller = gevent.spawn(control, environment)


def _start_process(environment, state) -> None:
    state.ready.wait()
    # a worker knows its index once the master has acknowledged it: by now it has
    worker_index = max(getattr(environment.runner, "worker_index", 0), 0)
    state.process.dispatcher.rng.seed(state.settings.search.seed * 1000 + worker_index)
    state.process.start()


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw):
    state = state_of(environment)
    if state.controller is not None and not state.done:
        # stopped before the controller finished: Ctrl-C, SIGTERM, or a stop from the web UI
        state.interrupted = True
        state.controller.kill(block=False)
    if state.process is not None:
        state.process.stop()


@events.quitting.add_listener
def _on_quitting(environment, **_kw):
    state = state_of(environment)
    if state.settings is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        if state.interrupted or not state.done:
            # interrupted (Ctrl-C, SIGTERM, or the run was stopped): keep what was measured
            if state.controller is not None:
                state.controller.kill(block=True, timeout=5)
            if state.process is not None:
                state.process.stop()
            write_result(state.settings, None, None, partial=True)
            log.warning(f"interrupted; partial results in {state.settings.run_dir}")
            if state.settings.result_json:
                console.result_json(state.settings.run_dir)
            state.exit_code = state.exit_code or ExitCode.FAILED
        state.collector.writer.close()
        if state.settings.write_report:
            write_report_once(state)
    finally:
        if state.scraper is not None:
            state.scraper.terminate()
            state.scraper.wait(5)
        environment.process_exit_code = int(state.exit_code)
