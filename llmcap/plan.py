"""`llmcap plan PROFILE`: every variant served, searched, reported, and compared, in one command.

For each variant in turn: start vLLM (serving/launcher.py), start the GPU exporter
when a GPU is present, run the rate search through Locust headless (which also
scrapes telemetry and writes the run's report), stop everything. Then write the
comparison across variants and an index into the plan directory. A variant that
fails to start, or sustains no rate, is reported as such and the others still run.
Ctrl-C (or SIGTERM) stops the server and the load, and keeps finished runs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from llmcap.accuracy_cmd import check_answers, describe, score_answers
from llmcap.errors import ExitCode, ProfileError
from llmcap.log import get_logger
from llmcap.profile import Profile, Slo, load_profile
from llmcap.rundir import (
    CLOSED_LOOP_DIR,
    PLAN_FILE,
    is_run_dir,
    read_progress,
    read_result,
    read_steps,
    write_json,
)
from llmcap.tiny_model import ensure_tiny_model
from loadtest import console
from loadtest.closed_loop import parse_levels
from reports.compare import run_links, write_comparison
from reports.render import Link, fmt, model_text, write
from reports.report import write_report
from serving.launcher import Server, ServerError, port_is_free, variant_unsupported

REPO = Path(__file__).resolve().parent.parent
log = get_logger("llmcap.plan")


class Interrupted(Exception):
    pass


def _raise_interrupt(*_):
    raise Interrupted()


def locustfile_for(task: str) -> Path:
    path = REPO / "loadtest" / f"{task}.py"
    if not path.is_file():
        raise ProfileError(f"dataset.task: no locustfile for task {task!r} ({path})")
    return path


def gpu_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        return count > 0
    except Exception:
        return False


def _free_port(start: int) -> int:
    port = start
    while not port_is_free("127.0.0.1", port):
        port += 1
    return port


def _any_free_port() -> int:
    """A port the OS picks: two plans on one machine never race for the same one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Progress:
    """One status line every few seconds: variant, step, rate, p95, elapsed, rough time left."""

    def __init__(self, variants: list[str], profile: Profile, repeats: int = 1):
        self.variants = variants
        self.repeats = repeats
        self.round = 1
        self.search = profile.search
        self.t0 = time.time()
        self.current = ""
        self.per_variant_s: list[float] = []
        self.variant_t0 = time.time()

    def start_variant(self, name: str, round_: int = 1) -> None:
        self.current, self.round = name, round_
        self.variant_t0 = time.time()

    def end_variant(self) -> None:
        self.per_variant_s.append(time.time() - self.variant_t0)

    def line(self, run_dir: Path) -> str:
        progress = read_progress(run_dir)
        index = self.variants.index(self.current) + 1 if self.current in self.variants else 0
        done = (self.round - 1) * len(self.variants) + index  # runs started so far
        total = self.repeats * len(self.variants)
        elapsed = time.time() - self.t0
        step_s = self.search.warmup_seconds + self.search.step_seconds + 3
        # a typical search: ~5 growth steps, ~3 bisections, one confirmation; finished variants tell better
        per_variant = (
            (sum(self.per_variant_s) / len(self.per_variant_s))
            if self.per_variant_s
            else 60 + 8 * step_s + self.search.confirm_seconds
        )
        left = max(0.0, per_variant - (time.time() - self.variant_t0)) + per_variant * (total - done)
        rate = progress.get("offered_rps")
        return (
            f"[plan {done}/{total} {self.current}] step {progress.get('step', '-')} "
            f"{progress.get('phase', 'starting')} at {fmt(rate, 1)} req/s, last p95 "
            f"{fmt(progress.get('last_p95_ms'))} ms; elapsed {elapsed / 60:.1f} min, ~{left / 60:.0f} min left"
        )


def locust_command() -> list[str]:
    """Locust's console script beside this interpreter, or its module where there is none (an
    interpreter whose packages came from a PYTHONPATH, as on the GPU check's machine)."""
    script = Path(sys.executable).with_name("locust")
    return [str(script)] if script.exists() else [sys.executable, "-m", "locust"]


def run_variant(
    profile: Profile,
    profile_path: str,
    variant: str,
    run_dir: Path,
    progress: Progress,
    processes: int,
    extra_locust_args: list[str],
    accuracy_passes: int = 0,
    closed_loop: tuple[list[int], float] | None = None,
    baseline_dir: Path | None = None,
) -> tuple[str, str]:
    """Serve, score its answers `accuracy_passes` times, search, sweep `closed_loop`'s (levels,
    seconds each) on the same server if asked, stop. Prompts without reference answers are scored
    against `baseline_dir`'s first pass (the baseline's own second pass, against its first).
    Returns (status, detail); status is 'ok', 'no-capacity', 'unsupported', 'failed' or 'interrupted'."""
    reason = variant_unsupported(profile, variant)
    if reason:
        print(f"llmcap plan: {variant}: skipped, cannot run on this machine: {reason}", flush=True)
        (run_dir / "UNSUPPORTED").write_text(reason + "\n")
        return "unsupported", reason
    port = _free_port(profile.serving.port)
    server = Server(profile, variant, run_dir, port=port)
    exporter = None
    locust = None
    try:
        what = " ".join(server.command) if server.command else f"the running server at {server.url}"
        print(f"llmcap plan: starting {variant}: {what}", flush=True)
        server.start()
        print(f"llmcap plan: {variant} ready in {server.ready_s:.0f} s at {server.url}", flush=True)
        for number in range(1, accuracy_passes + 1):
            t0 = time.time()
            against = run_dir if number > 1 else baseline_dir
            summary = score_answers(profile, server.url, server.model_name, run_dir, number, against)
            again = " (again: how repeatable temperature 0 is)" if number > 1 else ""
            print(f"  {variant}: answers{again}: {describe(summary)}, {time.time() - t0:.0f} s", flush=True)
        locust_cmd = [
            *locust_command(),
            "-f",
            str(locustfile_for(profile.dataset.task)),
            "--headless",
            "--only-summary",
            "-H",
            server.url,
            "--llmcap-profile",
            profile_path,
            "--engine",
            profile.serving.engine,
            *(["--model", server.model_name] if server.model_name else []),
            *(["--server-pid", str(server.proc.pid)] if server.proc else []),
        ]
        if gpu_present():
            exporter_port = _any_free_port()
            exporter = subprocess.Popen(
                [sys.executable, "-m", "llmcap.cli", "gpu-exporter", "--port", str(exporter_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            locust_cmd += ["--gpu-metrics-url", f"http://127.0.0.1:{exporter_port}/metrics"]
        if processes > 1:
            master_port = str(_any_free_port())
            locust_cmd += [
                "--processes",
                str(processes),
                "--master-bind-port",
                master_port,
                "--master-port",
                master_port,
            ]
        locust_cmd += extra_locust_args
        with open(run_dir / "locust.log", "a") as locust_log:
            locust = subprocess.Popen(locust_cmd + ["--run-dir", str(run_dir)], stdout=locust_log, stderr=locust_log)
            _follow(locust, progress, run_dir)
            code = locust.wait()
        result = read_result(run_dir) or {}
        if result.get("max_sustained_rps"):
            print(
                f"  {variant}: max sustained {result['max_sustained_rps']:.2f} req/s under "
                f"{Slo.from_record(result['slo']).describe()}, "
                f"{console.interval_text(result.get('max_sustained_rps_interval'))}",
                flush=True,
            )
        if closed_loop and code in (ExitCode.OK, ExitCode.NO_CAPACITY):
            levels, seconds = closed_loop
            sweep_cmd = [*locust_cmd, "--run-dir", str(run_dir / CLOSED_LOOP_DIR)]
            sweep_cmd += ["--concurrency", ",".join(map(str, levels)), "--duration", f"{seconds:g}"]
            print(
                f"  {variant}: closed loop at concurrency {', '.join(map(str, levels))}, {seconds:g} s each", flush=True
            )
            with open(run_dir / "locust.log", "a") as locust_log:
                locust = subprocess.Popen(sweep_cmd, stdout=locust_log, stderr=locust_log)
                sweep_code = locust.wait()
            if sweep_code != ExitCode.OK:
                log.error(f"{variant}: the closed-loop sweep exited with code {sweep_code} (see {run_dir}/locust.log)")
        if code == ExitCode.OK:
            return "ok", "sustained rate found"
        if code == ExitCode.NO_CAPACITY:
            return "no-capacity", "no rate sustained the SLO"
        if code == ExitCode.GENERATOR_BOTTLENECK:
            return "failed", "the load generator was the bottleneck"
        why = _last_llmcap_line(run_dir / "locust.log")
        log.error(f"{variant}: the load test exited with code {code}" + (f": {why}" if why else ""))
        return "failed", f"locust exited with code {code}" + (
            f": {why}" if why else ""
        ) + f" (see {run_dir}/locust.log)"
    except ServerError as e:
        first = str(e).splitlines()[0]
        log.error(f"{variant} failed to start: {first}")
        (run_dir / "FAILED").write_text(str(e))
        return "failed", f"server did not start: {first}"
    except (Interrupted, KeyboardInterrupt):
        if locust is not None and locust.poll() is None:
            locust.send_signal(signal.SIGINT)  # locust writes the partial result and report
            try:
                locust.wait(60)
            except subprocess.TimeoutExpired:
                locust.kill()
        raise
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        if exporter is not None:
            exporter.terminate()
        server.stop()


def _last_llmcap_line(path: Path) -> str | None:
    """The load test's own one-line reason (its diagnostics start with "llmcap"), for the plan's console."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    ours = [line for line in lines if line.startswith("llmcap: ")]
    return ours[-1].removeprefix("llmcap: ") if ours else None


def _follow(locust: subprocess.Popen, progress: Progress, run_dir: Path) -> None:
    """While the load test runs: each finished step as it lands in the run directory, and a status
    line every 10 s (Locust's own output goes to locust.log)."""
    shown, last_status = 0, time.time()
    while True:
        running = locust.poll() is None
        steps = read_steps(run_dir)
        for step in steps[shown:]:
            print(f"  {progress.current}: {console.format_step(step)}", flush=True)
        shown = len(steps)
        if not running:
            return
        if time.time() - last_status >= 10:
            print(progress.line(run_dir), flush=True)
            last_status = time.time()
        time.sleep(0.5)


def plan(
    profile_path: str,
    variants: list[str] | None = None,
    out: str | None = None,
    processes: int = 1,
    extra_locust_args: list[str] | None = None,
    repeats: int = 1,
    closed_loop: tuple[list[int], float] | None = None,
) -> tuple[int, Path]:
    profile = load_profile(profile_path)
    names = variants or list(profile.serving.variants)
    unknown = [v for v in names if v not in profile.serving.variants]
    if unknown:
        raise ProfileError(
            f"{profile_path}: serving.variants: no variant {unknown[0]!r} (have: {', '.join(profile.serving.variants)})"
        )
    if repeats < 1:
        raise ProfileError(f"--repeats {repeats}: expected 1 or more")
    if profile.accuracy.enabled:
        check_answers(profile)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plan_dir = Path(out or f"plans/{stamp}-{profile.name}")
    plan_dir.mkdir(parents=True, exist_ok=True)
    _write_plan_record(plan_dir, profile, names, {}, repeats, False, running=True)  # its runs' reports link back
    ensure_tiny_model(profile)
    progress = Progress(names, profile, repeats)
    statuses: dict[str, tuple[str, str]] = {}
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        # interleaved, A B A B ...: a drift of the machine over the plan falls on every variant alike
        for round_ in range(1, repeats + 1):
            for name in names:
                if statuses.get(name, ("",))[0] == "unsupported":
                    continue
                run_dir = run_dir_of(plan_dir, name, round_, repeats)
                run_dir.mkdir(parents=True, exist_ok=True)
                progress.start_variant(name, round_)
                # the baseline (the first variant) answers twice: the noise floor of agreement
                passes = (2 if name == names[0] else 1) if profile.accuracy.enabled and round_ == 1 else 0
                status = run_variant(
                    profile,
                    profile_path,
                    name,
                    run_dir,
                    progress,
                    processes,
                    extra_locust_args or [],
                    passes,
                    closed_loop if round_ == 1 else None,
                    run_dir_of(plan_dir, names[0], 1, repeats) if name != names[0] else None,
                )
                progress.end_variant()
                # a variant's status is its worst run's
                if name not in statuses or RANK[status[0]] > RANK[statuses[name][0]]:
                    statuses[name] = status
                label = name if repeats == 1 else f"{name} (run {round_} of {repeats})"
                print(f"llmcap plan: {label}: {status[0]} ({status[1]})", flush=True)
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
        log.warning("interrupted; servers stopped, finished runs kept")
    finally:
        signal.signal(signal.SIGTERM, old_term)
    _write_comparison_and_index(plan_dir, profile, names, statuses, repeats, interrupted)
    print(f"llmcap plan: comparison report: {plan_dir / 'comparison.html'} (and comparison.md)", flush=True)
    if interrupted:
        return ExitCode.INTERRUPTED, plan_dir
    if any(s == "failed" for s, _ in statuses.values()):
        return ExitCode.FAILED, plan_dir
    if any(s == "no-capacity" for s, _ in statuses.values()):
        return ExitCode.NO_CAPACITY, plan_dir
    return ExitCode.OK, plan_dir


def _write_comparison_and_index(
    plan_dir: Path, profile: Profile, names: list[str], statuses: dict, repeats: int, interrupted: bool
) -> None:
    runs = [
        (n, d)
        for n in names
        for d in (run_dir_of(plan_dir, n, r, repeats) for r in range(1, repeats + 1))
        if is_run_dir(d)
    ]
    finished = list(dict.fromkeys(n for n, _ in runs))
    failures = {n: f"{s}: {d}" for n, (s, d) in statuses.items() if n not in finished}
    for n in names:
        if n not in statuses and n not in finished:
            failures[n] = "not run (plan interrupted)"
    comparison = write_comparison([d for _, d in runs], plan_dir, labels=[n for n, _ in runs], failures=failures)
    _write_index(plan_dir, profile, names, statuses, repeats, comparison, interrupted)


def rerender(plan_dir: Path, prices: str | None = None) -> None:
    """A finished plan's reports, comparison and index written again by this code from what its runs
    recorded (`llmcap report PLAN_DIR`): nothing is served or measured."""
    try:
        record = json.loads((plan_dir / PLAN_FILE).read_text())
        names, interrupted = record["variants"], record["interrupted"]
        statuses = {n: (v["status"], v["detail"]) for n, v in record["statuses"].items()}
        # the profile's path as the plan was given it: relative ones from where the plan ran
        profile = load_profile(record["profile"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProfileError(f"{plan_dir / PLAN_FILE}: cannot re-render this plan ({e})") from None
    # older plans did not record it: run-k folders mean repeats, however few of them finished
    most = max(len(list((plan_dir / n).glob("run-*"))) for n in names) if names else 0
    repeats = record.get("repeats") or (max(2, most) if most else 1)
    for n in names:
        for r in range(1, repeats + 1):
            if is_run_dir(run_dir := run_dir_of(plan_dir, n, r, repeats)):
                write_report(run_dir, prices)
    _write_comparison_and_index(plan_dir, profile, names, statuses, repeats, interrupted)


RANK = {"ok": 0, "no-capacity": 1, "unsupported": 2, "failed": 3, "interrupted": 4}


def run_dir_of(plan_dir: Path, variant: str, round_: int, repeats: int) -> Path:
    """plan/<variant>, or plan/<variant>/run-<k> when each variant is searched more than once."""
    return plan_dir / variant if repeats == 1 else plan_dir / variant / f"run-{round_}"


def _write_index(
    plan_dir: Path,
    profile: Profile,
    names: list[str],
    statuses: dict,
    repeats: int,
    comparison: dict,
    interrupted: bool,
) -> None:
    rows = []
    by_name = {v["variant"]: v for v in comparison["variants"]}
    for n in names:
        status, detail = statuses.get(n, ("not run", "plan interrupted"))
        v = by_name.get(n, {})
        run_dirs = sorted(str(p.parent) for p in (plan_dir / n).glob("**/report.html"))
        links = run_links(run_dirs, plan_dir) or "–"
        rows.append([n, status, detail, fmt(v.get("max_sustained_rps"), 1), links])
    blocks = [
        ("h1", f"llmcap plan: {profile.name}"),
        (
            "p",
            f"Profile {profile.file}; model {model_text(profile.model.id)}."
            + (" INTERRUPTED: only finished runs are included." if interrupted else ""),
        ),
        ("table", ["variant", "status", "detail", "max sustained req/s", "report"], rows),
        ("p", ["Comparison: ", Link("comparison", "comparison"), " (and comparison.json)."]),
    ]
    write(blocks, plan_dir, "index", f"llmcap plan: {profile.name}")
    _write_plan_record(plan_dir, profile, names, statuses, repeats, interrupted)


def _write_plan_record(
    plan_dir: Path,
    profile: Profile,
    names: list[str],
    statuses: dict,
    repeats: int,
    interrupted: bool,
    running: bool = False,
) -> None:
    record = {
        "running": running,  # true until the plan writes its index and comparison
        "profile": profile.file,
        "variants": names,
        "repeats": repeats,
        "interrupted": interrupted,
        "statuses": {n: {"status": s, "detail": d} for n, (s, d) in statuses.items()},
    }
    write_json(plan_dir / PLAN_FILE, record)


def cmd_plan(args) -> int:
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    closed_loop = None
    if args.concurrency:
        try:
            closed_loop = (parse_levels(args.concurrency), args.concurrency_seconds)
        except ValueError as e:
            raise ProfileError(str(e)) from None
    code, _plan_dir = plan(
        args.profile, variants, args.out, args.processes, args.passthrough, args.repeats, closed_loop
    )
    return code


def register(sub) -> None:
    p = sub.add_parser("plan", help="serve each variant, search its capacity, and compare them")
    p.add_argument("profile", help="profile YAML: the model, its variants, the dataset, the SLO")
    p.add_argument("--variants", help="comma-separated subset, e.g. bf16,fp8 (default: all in the profile)")
    p.add_argument("--out", help="plan directory (default plans/<UTC time>-<profile name>)")
    p.add_argument("--processes", type=int, default=1, help="load-generating processes (Locust --processes)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="search each variant this many times, interleaved (A B A B ...); the comparison reports the "
        "median, the spread and an interval from the repeats",
    )
    p.add_argument(
        "--concurrency",
        help="after each variant's search, on the same server, a closed-loop sweep at these levels "
        "(e.g. 1,4,16,64): the comparison shows both views",
    )
    p.add_argument("--concurrency-seconds", type=float, default=30.0, help="seconds measured at each level")
    p.epilog = "Arguments after -- go to each load test, e.g. llmcap plan P -- --step-seconds 5"
    p.set_defaults(func=cmd_plan)
