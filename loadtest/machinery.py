"""What a locustfile needs: the streaming chat user, the rate-search shape, and the wiring.

A locustfile is a few lines:

    from loadtest.datasets import TEXT2SQL
    from loadtest.machinery import ChatUser, RateSearchShape

    class Text2SQLUser(ChatUser):
        task_spec = TEXT2SQL

    class Search(RateSearchShape):
        pass

Everything else hangs off Locust's events: custom arguments, per-process set-up
(`init`), the controller on the master or local runner (`test_start`), the
result and exit code (`quitting`). Users are a fixed pool that takes tickets from
the process's dispatcher; the controller changes the rate, never the pool.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request

import gevent
import gevent.event
import greenlet
from locust import LoadTestShape, User, events, task
from locust.runners import MasterRunner, WorkerRunner

from llmcap.profile import ProfileError
from loadtest import console
from loadtest.arrivals import Dispatcher
from loadtest.client import ChatClient
from loadtest.clock import now
from loadtest.datasets import DatasetError, Task, load_prompts
from loadtest.process import Collector, LoadProcess
from loadtest.result import append_step, write_result
from loadtest.samples import SampleWriter, read_samples
from loadtest.search import SearchOutcome, run_search, run_step
from loadtest.settings import add_arguments, resolve
from serving import scraper
from serving.telemetry import server_pids, server_summary

log = logging.getLogger("llmcap")

EXIT_OK, EXIT_BAD_INPUT, EXIT_NO_CAPACITY, EXIT_GENERATOR_BOTTLENECK = 0, 2, 3, 4
RATE_MESSAGE, BATCH_MESSAGE = "llmcap_rate", "llmcap_batch"


class _State:
    """Per-process state, filled in by `init`."""

    settings = None
    prompts = None
    bodies: list[bytes] = []
    process: LoadProcess | None = None
    collector: Collector | None = None
    controller: gevent.Greenlet | None = None
    scraper = None  # the telemetry scraper's process
    progress = None
    pending_rps: float | None = None  # a worker's rate, set by the master (maybe before init is done)
    done = False
    interrupted = False
    # A worker's runner takes spawn messages while `init` still waits on the network
    # (resolving the model), so users wait for this before they touch the process state
    ready = gevent.event.Event()
    exit_code = EXIT_OK


STATE = _State()


def fail(message: str, code: int = EXIT_BAD_INPUT, quiet: bool = False):
    """Bad input: one line, no traceback, non-zero exit."""
    if not quiet:
        sys.stderr.write(f"llmcap: {message}\n")
        sys.stderr.flush()
    sys.exit(code)


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kw):
    add_arguments(parser)


def _task_of(user_classes) -> Task:
    for cls in user_classes:
        spec = getattr(cls, "task_spec", None)
        if spec is not None:
            return spec
    raise RuntimeError("the locustfile defines no ChatUser subclass with a task_spec")


def fetch_json(url: str, timeout_s: float, api_key: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def resolve_model(host: str, wanted: str | None, api_key: str | None) -> str:
    """Check the server is an OpenAI-compatible one serving the model, before any load."""
    url = host + "/v1/models"
    try:
        listed = [m["id"] for m in fetch_json(url, 10.0, api_key)["data"]]
    except urllib.error.HTTPError as e:
        raise DatasetError(f"{url}: HTTP {e.code}: not an OpenAI-compatible server?") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DatasetError(f"{host}: cannot reach the server ({reason})") from None
    except (ValueError, KeyError, TypeError):
        raise DatasetError(f"{url}: not an OpenAI model list: not an OpenAI-compatible server?") from None
    if wanted:
        if wanted not in listed:
            raise DatasetError(f"{url}: model {wanted!r} is not served (served: {', '.join(listed) or 'none'})")
        return wanted
    if len(listed) != 1:
        raise DatasetError(f"{url}: serves {len(listed)} models ({', '.join(listed)}): choose one with --model")
    return listed[0]


def build_bodies(prompts, model: str, request: dict) -> list[bytes]:
    """Request bodies, encoded once: the hot path only sends bytes."""
    fields = {"model": model, "stream": True, "stream_options": {"include_usage": True},
              "max_tokens": request["max_tokens"], "temperature": request["temperature"]}
    if request["ignore_eos"]:
        fields["ignore_eos"] = True
    if request["min_tokens"] is not None:
        fields["min_tokens"] = request["min_tokens"]
    bodies = []
    for p in prompts.requests:
        body = {**fields, **p}
        if request.get("tool_choice") and "tools" in body:
            body["tool_choice"] = request["tool_choice"]
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


@events.init.add_listener
def _on_init(environment, **_kw):
    runner = environment.runner
    is_worker = isinstance(runner, WorkerRunner)
    if environment.parsed_options is None or not any(getattr(c, "task_spec", None) for c in environment.user_classes):
        return
    if is_worker:
        # before anything that waits on the network: the master may set the rate while this init still
        # resolves the model, and Locust drops a message that has no handler yet
        runner.register_message(RATE_MESSAGE, _on_rate_message)
    try:
        settings = resolve(environment.parsed_options, _task_of(environment.user_classes).name)
        if not settings.host:
            raise DatasetError("no host: pass -H http://HOST:PORT (the OpenAI-compatible server)")
        prompts = load_prompts(_task_of(environment.user_classes), settings.dataset,
                               seed=settings.seed, sample=settings.sample)
        api_key = _api_key(settings)
        model = resolve_model(settings.host, settings.model, api_key)
        if not is_worker:
            try:
                writer = SampleWriter(settings.run_dir)
            except OSError as e:
                raise DatasetError(f"{settings.run_dir}: cannot write the run directory ({e.strerror})") from None
    except (ProfileError, DatasetError) as e:
        fail(str(e), quiet=is_worker)
    settings.model = model
    STATE.settings, STATE.prompts = settings, prompts
    STATE.bodies = build_bodies(prompts, model, settings.request)

    if not is_worker:
        _sigterm_as_ctrl_c()
        if settings.store_text:
            _write_prompts(settings.run_dir, prompts)
        STATE.collector = Collector(writer)
        STATE.progress = console.ProgressFile(settings.run_dir / "progress.json")
        console.banner(settings, len(prompts))
        targets = {"vllm": settings.metrics_url} if settings.metrics_url else {}
        if settings.gpu_metrics_url:
            targets["gpu"] = settings.gpu_metrics_url
        if targets:
            STATE.scraper = scraper.start(settings.run_dir / "telemetry", targets)
    if isinstance(runner, MasterRunner):
        runner.register_message(BATCH_MESSAGE, lambda msg, **kw: STATE.collector.add(msg.data))
        return
    dispatcher = Dispatcher(settings.arrival, seed=settings.seed)  # re-seeded per worker at test start
    if is_worker:
        deliver = lambda batch: runner.send_message(BATCH_MESSAGE, batch)  # noqa: E731
    else:
        deliver = STATE.collector.add
    STATE.process = LoadProcess(dispatcher, deliver, lambda: getattr(runner, "worker_index", 0))
    if STATE.pending_rps is not None:
        dispatcher.set_rate(STATE.pending_rps)
    STATE.ready.set()


def _on_rate_message(msg, **_kw) -> None:
    STATE.pending_rps = msg.data["rps"]
    if STATE.process is not None:
        STATE.process.dispatcher.set_rate(msg.data["rps"])


def _sigterm_as_ctrl_c() -> None:
    """Headless Locust with a LoadTestShape runs the whole test inside start_automatic_run(), before it
    installs its own SIGTERM handler (locust 2.47 main.py), so SIGTERM would kill the process with no
    teardown. Turn it into the Ctrl-C path, which stops the runner and fires `quitting`."""
    main = greenlet.getcurrent()
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(main.throw, KeyboardInterrupt))


def _write_prompts(run_dir, prompts) -> None:
    """--store-text: the requests themselves, once, keyed by the hash the samples carry."""
    with open(run_dir / "prompts.jsonl", "w") as f:
        for h, request in zip(prompts.hashes, prompts.requests):
            f.write(json.dumps({"prompt_hash": h, **request}) + "\n")


def _api_key(settings) -> str | None:
    env = settings.request.get("api_key_env")
    return os.environ.get(env) if env else None


@events.test_start.add_listener
def _on_test_start(environment, **_kw):
    if not any(getattr(c, "task_spec", None) for c in environment.user_classes):
        return
    if not isinstance(environment.runner, MasterRunner):
        # a worker's test can start (the master's spawn message) while its init still waits on the
        # network: start the load process once init is done, not never
        gevent.spawn(_start_process, environment)
    if STATE.settings is not None and not isinstance(environment.runner, WorkerRunner) and STATE.controller is None:
        STATE.controller = gevent.spawn(_control, environment)


def _start_process(environment) -> None:
    STATE.ready.wait()
    # a worker knows its index once the master has acknowledged it: by now it has
    STATE.process.dispatcher.rng.seed(STATE.settings.seed * 1000 + max(getattr(environment.runner, "worker_index", 0), 0))
    STATE.process.start()


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw):
    if STATE.controller is not None and not STATE.done:
        # stopped before the controller finished: Ctrl-C, SIGTERM, or a stop from the web UI
        STATE.interrupted = True
        STATE.controller.kill(block=False)
    if STATE.process is not None:
        STATE.process.stop()


class _RunnerLoad:
    """The controller's handle on the load, local or distributed (see search.Load)."""

    def __init__(self, environment):
        self.environment = environment
        self.runner = environment.runner
        self.rate_rps = 0.0
        self._split = None

    def set_rate(self, rate_rps: float) -> None:
        self.rate_rps = rate_rps
        self._apply()

    def _apply(self) -> None:
        if isinstance(self.runner, MasterRunner):
            workers = max(self.runner.worker_count, 1)
            self._split = workers
            self.runner.send_message(RATE_MESSAGE, {"rps": self.rate_rps / workers})
        else:
            STATE.process.dispatcher.set_rate(self.rate_rps)

    def keep_split(self) -> None:
        # workers joined or left: re-split the total rate
        if isinstance(self.runner, MasterRunner) and self._split != max(self.runner.worker_count, 1):
            self._apply()

    def wait_settled(self, before_s: float, timeout_s: float) -> None:
        deadline = now() + timeout_s
        while not STATE.collector.settled(before_s) and now() < deadline:
            self.keep_split()
            gevent.sleep(0.2)

    def drain(self, timeout_s: float) -> None:
        deadline = now() + timeout_s
        metrics_url = STATE.settings.metrics_url
        while now() < deadline:
            gevent.sleep(0.3)
            if STATE.collector.in_flight() == 0 and server_queue_empty(metrics_url):
                return

    def window(self):
        return read_samples(STATE.settings.run_dir)

    def cpu_percent(self, start_s: float, end_s: float) -> float:
        return STATE.collector.cpu_percent(start_s, end_s)


def server_queue_empty(metrics_url: str | None) -> bool:
    """vllm:num_requests_waiting and running are 0 (True when there are no metrics to read)."""
    if not metrics_url:
        return True
    try:
        with urllib.request.urlopen(metrics_url, timeout=2.0) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return True
    for line in text.splitlines():
        if line.startswith(("vllm:num_requests_waiting", "vllm:num_requests_running")):
            try:
                if float(line.rsplit(" ", 1)[1]) > 0:
                    return False
            except ValueError:
                pass
    return True


def _wait_for_pool(environment, timeout_s: float = 60.0) -> None:
    runner = environment.runner
    deadline = now() + timeout_s
    target = STATE.settings.max_concurrency
    while runner.user_count < target and now() < deadline:
        gevent.sleep(0.2)


def _control(environment) -> None:
    settings = STATE.settings
    load = _RunnerLoad(environment)
    try:
        _wait_for_pool(environment)
        started = now()
        if settings.rps is not None:
            ticker = console.LiveLine(STATE.collector, settings)
            step = run_step(load, settings.rps, settings.duration, 0.0, settings.slo,
                            settings.request["timeout_s"], settings.search.max_lateness_ms,
                            on_tick=ticker.tick)
            step["index"] = 0
            _on_step(step)
            outcome = _fixed_outcome(step)
        else:
            outcome = run_search(load, settings.search, settings.slo, settings.request["timeout_s"],
                                 on_step=_on_step, on_tick=STATE.progress.tick)
        STATE.exit_code = exit_code_of(outcome)
        write_result(settings, outcome, started, partial=False)
        console.final(outcome, settings)
    except gevent.GreenletExit:
        raise
    except Exception:
        log.exception("llmcap controller failed")
        STATE.exit_code = 1
    finally:
        STATE.done = True


def _on_step(step: dict) -> None:
    run_dir = STATE.settings.run_dir
    STATE.progress.step_done(step)
    step["server"] = server_summary(run_dir / "telemetry", step["start"], step["end"], server_pids(run_dir))
    append_step(run_dir, step)
    console.step_line(step)


def _fixed_outcome(step: dict) -> SearchOutcome:
    return SearchOutcome([step], step["offered_rps"] if step["passed"] else None,
                         None if step["passed"] else step["offered_rps"], confirmed=step["passed"],
                         generator_bottleneck=step["reason"] if step["generator_bottleneck"] else None,
                         mode="fixed")


def exit_code_of(outcome) -> int:
    if outcome.generator_bottleneck:
        return EXIT_GENERATOR_BOTTLENECK
    if outcome.mode == "fixed":
        return EXIT_OK
    return EXIT_OK if outcome.max_sustained_rps else EXIT_NO_CAPACITY


@events.quitting.add_listener
def _on_quitting(environment, **_kw):
    if STATE.settings is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        if STATE.interrupted or not STATE.done:
            # interrupted (Ctrl-C, SIGTERM, or the run was stopped): keep what was measured
            if STATE.controller is not None:
                STATE.controller.kill(block=True, timeout=5)
            if STATE.process is not None:
                STATE.process.stop()
            write_result(STATE.settings, None, None, partial=True)
            sys.stderr.write(f"llmcap: interrupted; partial results in {STATE.settings.run_dir}\n")
            STATE.exit_code = STATE.exit_code or 1
        STATE.collector.writer.close()
        if STATE.settings.write_report:
            try:
                from reports.report import write_report
                write_report(STATE.settings.run_dir)
            except Exception as e:  # a report problem must not cost the measurement
                sys.stderr.write(f"llmcap: report failed: {type(e).__name__}: {e}\n")
    finally:
        if STATE.scraper is not None:
            STATE.scraper.terminate()
            STATE.scraper.wait(5)
        environment.process_exit_code = STATE.exit_code


class RateSearchShape(LoadTestShape):
    """Holds the user pool while the controller runs the search (or the fixed rate); then ends the run."""

    def tick(self):
        if STATE.done or STATE.settings is None:
            return None
        pool = STATE.settings.max_concurrency
        return pool, pool


class ChatUser(User):
    """A pooled user: takes a ticket, sends that request streamed, records it, takes the next."""

    abstract = True
    task_spec: Task | None = None
    host = None

    def on_start(self):
        STATE.ready.wait()
        settings = STATE.settings
        self.process = STATE.process
        self.take = self.process.dispatcher.take
        self.bodies = STATE.bodies
        self.prompts = STATE.prompts
        self.client = ChatClient(self.environment.host or settings.host, api_key=_api_key(settings),
                                 timeout_s=settings.request["timeout_s"], store_text=settings.store_text)
        self.fire = self.environment.events.request.fire
        self.wait()  # take the first ticket while WAITING, so a stop kills an idle user at once

    def on_stop(self):
        self.client.close()

    def wait_time(self):
        self.ticket = self.take()
        return 0

    @task
    def send(self):
        ticket = self.ticket
        index = self.prompts.pick(ticket[0])
        r = self.client.stream(self.bodies[index])
        self.process.record(ticket, self.prompts.hashes[index], r)
        # one Locust event per request, with the end-to-end time (not the header time)
        self.fire(request_type="POST", name="chat/completions", response_time=(r.end_s - ticket[1]) * 1000.0,
                  response_length=max(r.completion_tokens, 0), exception=RequestFailed(r.message) if r.error else None, context=None)


class RequestFailed(Exception):
    """How a failed request shows in Locust's own error table."""
