"""Run settings: Locust custom arguments over the profile over the defaults.

The profile's settings, their defaults and their arguments are defined once, in
`llmcap/profile.py`; the arguments here are generated from it. Only the options that
belong to one run and not to a profile (where its directory goes, fixed-rate mode,
metrics URLs) are defined here. Every argument defaults to None so that "not given"
is visible and the profile's value (or the default) applies.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

from llmcap.profile import (
    AT_LEAST_ONE,
    PORT,
    POSITIVE,
    Profile,
    ProfileError,
    RequestSettings,
    SearchParams,
    Slo,
    cli_settings,
    load_profile,
    out_of_range,
)
from llmcap.traces import ArrivalTrace, read_arrivals
from loadtest.closed_loop import parse_levels
from loadtest.dialect import exports_metrics
from loadtest.search import RateSearch

DEFAULT_PROMETHEUS_BIND = "127.0.0.1"  # this machine only: a load generator's figures are not for the network

# (argument, type, help, valid range): options of one run, with no profile counterpart
RUN_OPTIONS = [
    ("--llmcap-profile", str, "llmcap profile YAML (slo, search, request, model, dataset)", None),
    ("--run-dir", str, "where samples and results go (default runs/<UTC time>-<name>)", None),
    (
        "--rps",
        float,
        "fixed-rate mode: offer this many requests/s (no search); exit 3 when the SLO fails with confidence",
        POSITIVE,
    ),
    ("--duration", float, "fixed-rate mode, or each closed-loop level: seconds to measure (default 60)", POSITIVE),
    (
        "--concurrency",
        str,
        "closed loop: keep N requests open instead of a rate (no search); a list sweeps, e.g. 1,4,16,64",
        None,
    ),
    ("--metrics-url", str, "vLLM /metrics URL for drain checks and telemetry (default HOST/metrics)", None),
    ("--gpu-metrics-url", str, "GPU exporter /metrics URL (llmcap gpu-exporter or DCGM)", None),
    (
        "--server-pid",
        int,
        "the server's PID, when it runs on this machine (GPU memory of its process tree)",
        AT_LEAST_ONE,
    ),
    (
        "--prometheus-port",
        int,
        "serve llmcap's own figures on this port's /metrics (offered and achieved rate, exact percentiles, the SLO)",
        PORT,
    ),
    (
        "--prometheus-bind",
        str,
        f"the address --prometheus-port listens on (default {DEFAULT_PROMETHEUS_BIND}; 0.0.0.0: every interface)",
        None,
    ),
    ("--store-text", bool, "also store prompt text with the samples (off: counts and a hash only)", None),
    ("--no-report", bool, "do not write the report at the end", None),
    (
        "--locust-stats",
        bool,
        "also print Locust's stats table every 2 s (its percentiles are approximate; llmcap's are exact)",
        None,
    ),
    ("--result-json", bool, "print the final result as one JSON object on stdout (Locust's --json: its stats)", None),
]
DEFAULT_DURATION_S = 60.0


def add_arguments(parser) -> None:
    group = parser.add_argument_group("llmcap")
    for flag, kind, help_, _valid in RUN_OPTIONS:
        help_ = help_.replace("%", "%%")  # argparse formats help text
        if kind is bool:
            group.add_argument(flag, action="store_true", default=None, help=help_)
        else:
            group.add_argument(flag, type=kind, default=None, help=help_)
    for s in cli_settings():
        help_ = (s.help if s.default in (None, False, "") else f"{s.help} (default {s.default})").replace("%", "%%")
        if s.kind is bool:
            group.add_argument(s.flag, action="store_true", default=None, help=help_)
        else:
            group.add_argument(s.flag, type=s.kind, default=None, choices=s.choices, help=help_)


@dataclasses.dataclass
class RunSettings:
    name: str
    host: str
    run_dir: Path
    profile: Profile  # the profile (or the defaults) with this run's arguments applied
    profile_file: str | None
    rps: float | None
    concurrency: list[int] | None  # closed-loop levels (loadtest/closed_loop.py)
    arrival_trace: ArrivalTrace | None  # read once, here: a bad row fails before any load
    duration: float
    metrics_url: str | None
    gpu_metrics_url: str | None
    server_pid: int | None
    prometheus_port: int | None
    prometheus_bind: str
    store_text: bool
    write_report: bool
    result_json: bool = False

    @property
    def request(self) -> RequestSettings:
        return self.profile.request

    @property
    def slo(self) -> Slo:
        return self.profile.slo

    @property
    def search(self) -> SearchParams:
        return self.profile.search

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency else "fixed" if self.rps is not None else "search"

    @property
    def pool_size(self) -> int:
        """Users per run: enough for the largest closed-loop level too."""
        return max(self.search.max_concurrency, max(self.concurrency or [0]))

    @property
    def model(self) -> str | None:
        return self.profile.model.served_name


def _attr(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _check_ranges(options) -> None:
    """Every number given as an argument within its range, before anything is read or sent."""
    given = [(flag, valid) for flag, _kind, _help, valid in RUN_OPTIONS]
    given += [(s.flag, s.valid) for s in cli_settings()]
    for flag, valid in given:
        why = out_of_range(flag, getattr(options, _attr(flag), None), valid)
        if why:
            raise ProfileError(why)


def resolve(options, task_name: str) -> RunSettings:
    """Merge parsed Locust options with the profile (if any) and the defaults."""
    _check_ranges(options)
    profile_file = getattr(options, "llmcap_profile", None)
    profile = load_profile(profile_file) if profile_file else Profile(name=task_name)
    if not profile_file:
        profile.dataset.task = task_name
    for s in cli_settings():
        given = getattr(options, _attr(s.flag), None)
        if given is not None:
            setattr(getattr(profile, s.section), s.name, given)
    try:
        profile.slo.latency_bounds()
    except ValueError as e:
        where = "--slo" if getattr(options, "slo", None) is not None else f"{profile_file}: slo.bounds"
        raise ProfileError(f"{where}: {e}") from None
    try:
        RateSearch(profile.search)
    except ValueError as e:
        raise ProfileError(f"{profile_file or 'arguments'}: search: {e}") from None
    arrival_trace = None
    if profile.search.arrival == "trace":
        if not profile.search.trace:
            raise ProfileError(f"{profile_file or 'arguments'}: arrival 'trace' needs a trace file: --trace FILE")
        arrival_trace = read_arrivals(profile.search.trace)
    elif profile.search.trace:
        raise ProfileError(
            f"{profile_file or 'arguments'}: a trace ({profile.search.trace}) is played only with --arrival trace"
        )
    concurrency = getattr(options, "concurrency", None)
    if concurrency is not None:
        try:
            concurrency = parse_levels(concurrency)
        except ValueError as e:
            raise ProfileError(str(e)) from None
        if getattr(options, "rps", None) is not None:
            raise ProfileError("--rps and --concurrency are two modes: give one")
        if profile.sessions.turns > 1:
            raise ProfileError("--concurrency keeps single requests open: sessions (--turns) need a rate")
    run_dir = getattr(options, "run_dir", None)
    if not run_dir:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        run_dir = os.path.join("runs", f"{stamp}-{profile.name}")
    host = (options.host or "").rstrip("/")
    serves_metrics = host and exports_metrics(profile.serving.engine)
    metrics_url = getattr(options, "metrics_url", None) or (host + "/metrics" if serves_metrics else None)
    return RunSettings(
        name=profile.name,
        host=host,
        run_dir=Path(run_dir),
        profile=profile,
        profile_file=profile_file,
        rps=getattr(options, "rps", None),
        concurrency=concurrency,
        arrival_trace=arrival_trace,
        duration=getattr(options, "duration", None) or DEFAULT_DURATION_S,
        metrics_url=metrics_url,
        gpu_metrics_url=getattr(options, "gpu_metrics_url", None),
        server_pid=getattr(options, "server_pid", None),
        prometheus_port=getattr(options, "prometheus_port", None),
        prometheus_bind=getattr(options, "prometheus_bind", None) or DEFAULT_PROMETHEUS_BIND,
        store_text=bool(getattr(options, "store_text", None)),
        write_report=not getattr(options, "no_report", None),
        result_json=bool(getattr(options, "result_json", None)),
    )
