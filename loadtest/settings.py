"""Run settings: Locust custom arguments over the profile over defaults.

Every custom argument defaults to None so that "not given" is visible and the
profile's value (or the schema's default) applies.
"""
from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from pathlib import Path

from llmcap.profile import SCHEMA, ProfileError, load_profile
from loadtest.search import RateSearch, SearchParams
from loadtest.stats import Slo

# (argument, profile section, profile key, type, help)
OPTIONS = [
    ("--llmcap-profile", None, None, str, "llmcap profile YAML (slo, search, request, model, dataset)"),
    ("--run-dir", None, None, str, "where samples and results go (default runs/<UTC time>-<name>)"),
    ("--rps", None, None, float, "fixed-rate mode: offer this many requests/s (no search)"),
    ("--duration", None, None, float, "fixed-rate mode: seconds to run (default 60)"),
    ("--model", "model", "served_name", str, "model name to request (default: the one /v1/models lists)"),
    ("--dataset", "dataset", "path", str, "dataset file (default: the task's shipped example)"),
    ("--sample", "dataset", "sample", int, "use a seeded random sample of this many records"),
    ("--max-tokens", "request", "max_tokens", int, "max_tokens per request"),
    ("--min-tokens", "request", "min_tokens", int, "vLLM min_tokens (fixed output length with --ignore-eos)"),
    ("--temperature", "request", "temperature", float, "sampling temperature"),
    ("--ignore-eos", "request", "ignore_eos", "bool", "vLLM ignore_eos: always generate max_tokens"),
    ("--request-timeout-s", "request", "timeout_s", float, "a request open this long fails with 'timeout'"),
    ("--tool-choice", "request", "tool_choice", str, "function-calling tasks: auto, required or none"),
    ("--api-key-env", "request", "api_key_env", str, "environment variable that holds the API key"),
    ("--slo-p95-ms", "slo", "p95_ms", float, "SLO: end-to-end p95 (ms)"),
    ("--slo-p99-ms", "slo", "p99_ms", float, "SLO: end-to-end p99 (ms)"),
    ("--slo-ttft-p95-ms", "slo", "ttft_p95_ms", float, "SLO: time-to-first-token p95 (ms)"),
    ("--max-error-rate", "slo", "max_error_rate", float, "SLO: highest failed fraction"),
    ("--start-rps", "search", "start_rps", float, "search: first rate"),
    ("--growth", "search", "growth", float, "search: rate multiplier until a step fails"),
    ("--step-seconds", "search", "step_seconds", float, "search: measured window per step"),
    ("--warmup-seconds", "search", "warmup_seconds", float, "search: unmeasured lead-in per step"),
    ("--precision", "search", "precision", float, "search: stop bisecting when (fail-pass)/pass <= this"),
    ("--confirm-seconds", "search", "confirm_seconds", float, "search: window of the confirmation step"),
    ("--max-rps", "search", "max_rps", float, "search: never offer more than this"),
    ("--min-rps", "search", "min_rps", float,
     "search: when the start rate fails, step down to this rate before concluding 'no capacity' "
     "(default start rate / 16)"),
    ("--min-requests", "search", "min_requests", int, "search: a step's window holds at least this many arrivals"),
    ("--max-lateness-ms", "search", "max_lateness_ms", float, "load generator self-check: lateness p99 bound"),
    ("--arrival", "search", "arrival", str, "poisson (default) or constant"),
    ("--seed", "search", "seed", int, "seed for arrivals and prompt order"),
    ("--max-concurrency", "search", "max_concurrency", int, "users (open requests) across all processes"),
    ("--metrics-url", None, None, str, "vLLM /metrics URL for drain checks and telemetry (default HOST/metrics)"),
    ("--gpu-metrics-url", None, None, str, "GPU exporter /metrics URL (llmcap gpu-exporter or DCGM)"),
    ("--store-text", None, None, "bool", "also store prompt text with the samples (off: counts and a hash only)"),
    ("--no-report", None, None, "bool", "do not write the report at the end"),
]


def add_arguments(parser) -> None:
    group = parser.add_argument_group("llmcap")
    for flag, _section, _key, kind, help_ in OPTIONS:
        if kind == "bool":
            group.add_argument(flag, action="store_true", default=None, help=help_)
        else:
            group.add_argument(flag, type=kind, default=None, help=help_)


@dataclasses.dataclass
class RunSettings:
    name: str
    host: str
    run_dir: Path
    profile: dict | None
    model: str | None
    dataset: str | None
    sample: int | None
    request: dict  # max_tokens, min_tokens, temperature, ignore_eos, timeout_s, api_key_env
    slo: Slo
    search: SearchParams
    arrival: str
    seed: int
    max_concurrency: int
    rps: float | None
    duration: float
    metrics_url: str | None
    gpu_metrics_url: str | None
    store_text: bool
    write_report: bool


def _attr(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def resolve(options, task_name: str) -> RunSettings:
    """Merge parsed Locust options with the profile (if any) and the schema defaults."""
    profile = load_profile(options.llmcap_profile) if getattr(options, "llmcap_profile", None) else None
    values: dict[tuple[str, str], object] = {}
    for section, spec in SCHEMA.items():
        if isinstance(spec, dict):
            for key, (_types, default) in spec.items():
                values[(section, key)] = profile[section][key] if profile else default
    for flag, section, key, _kind, _help in OPTIONS:
        given = getattr(options, _attr(flag), None)
        if section and given is not None:
            values[(section, key)] = given

    def section(name: str) -> dict:
        return {k: v for (s, k), v in values.items() if s == name}

    slo_v = section("slo")
    search_v = section("search")
    name = (profile["name"] if profile else task_name)
    run_dir = getattr(options, "run_dir", None)
    if not run_dir:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        run_dir = os.path.join("runs", f"{stamp}-{name}")
    search = SearchParams(**{k: search_v[k] for k in (
        "start_rps", "growth", "precision", "step_seconds", "warmup_seconds", "confirm_seconds",
        "max_rps", "min_rps", "min_requests", "max_lateness_ms")})
    try:
        RateSearch(search)
    except ValueError as e:
        where = options.llmcap_profile if getattr(options, "llmcap_profile", None) else "arguments"
        raise ProfileError(f"{where}: search: {e}") from None
    host = (options.host or "").rstrip("/")
    metrics_url = getattr(options, "metrics_url", None) or (host + "/metrics" if host else None)
    return RunSettings(
        name=name,
        host=host,
        run_dir=Path(run_dir),
        profile=profile,
        model=values[("model", "served_name")] if getattr(options, "model", None) or profile else None,
        dataset=values[("dataset", "path")],
        sample=values[("dataset", "sample")],
        request=section("request"),
        slo=Slo(p95_ms=slo_v["p95_ms"], p99_ms=slo_v["p99_ms"], ttft_p95_ms=slo_v["ttft_p95_ms"],
                max_error_rate=slo_v["max_error_rate"]),
        search=search,
        arrival=search_v["arrival"],
        seed=search_v["seed"],
        max_concurrency=search_v["max_concurrency"],
        rps=getattr(options, "rps", None),
        duration=getattr(options, "duration", None) or 60.0,
        metrics_url=metrics_url,
        gpu_metrics_url=getattr(options, "gpu_metrics_url", None),
        store_text=bool(getattr(options, "store_text", None)),
        write_report=not getattr(options, "no_report", None),
    )
