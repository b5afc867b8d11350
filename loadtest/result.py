"""result.json: the run's answer, its steps, and how it was produced."""

from __future__ import annotations

import dataclasses
import platform
import sys
from importlib import metadata
from pathlib import Path

from llmcap.rundir import LATENCY_KEYS, RESULT_SCHEMA_VERSION, read_samples, read_steps, step_at_max
from llmcap.rundir import write_result as write_result_file
from loadtest.stats import summarize_window


def versions() -> dict:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("llmcap", "locust", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def trace_info(trace) -> dict | None:
    if trace is None:
        return None
    return {
        "file": Path(trace.source).name,
        "kind": "times" if trace.times_s is not None else "counts",
        "requests": trace.requests,
        "duration_s": trace.duration_s,
        "mean_rps": trace.mean_rps,
    }


def write_result(settings, outcome, started: float | None, partial: bool) -> dict:
    """Write result.json. With no outcome (interrupted), steps are rebuilt from steps.jsonl."""
    run_dir = Path(settings.run_dir)
    steps = outcome.steps if outcome else read_steps(run_dir)
    if partial and not steps:
        samples, itl = read_samples(run_dir)
        if len(samples):
            # no step finished: summarise what was measured, so the samples are not lost from view
            summary = summarize_window(
                samples,
                itl,
                float(samples["scheduled_s"].min()),
                float(samples["scheduled_s"].max()) + 1e-6,
                settings.slo,
            )
            steps = [
                {
                    "index": 0,
                    "phase": "partial",
                    "offered_rps": summary["arrival_rps"],
                    **summary,
                    "passed": False,
                    "reason": "interrupted before the step finished",
                    "generator_bottleneck": False,
                }
            ]
    at_max = step_at_max(steps, outcome.max_sustained_rps if outcome else None)
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "name": settings.name,
        "mode": settings.mode,
        "partial": partial,
        "max_sustained_rps": outcome.max_sustained_rps if outcome else None,
        "max_sustained_rps_interval": outcome.interval if outcome else None,
        "max_sustained_rps_fit": outcome.fit.as_dict() if outcome and outcome.fit else None,
        "max_sustained_rps_crossing": outcome.crossing if outcome else None,
        "first_failing_rps": outcome.first_failing_rps if outcome else None,
        "generator_bottleneck": outcome.generator_bottleneck if outcome else None,
        "slo": settings.slo.record(),
        "search": dataclasses.asdict(settings.search),
        "latency_at_max": {k: at_max.get(k) for k in LATENCY_KEYS} if at_max else None,
        "steps": steps,
        "model": settings.model,
        "host": settings.host,
        "request": {k: v for k, v in dataclasses.asdict(settings.request).items() if k != "api_key_env"},
        "arrival": settings.search.arrival,
        "arrival_trace": trace_info(settings.arrival_trace),
        "profile": settings.profile_file,
        "cost": dataclasses.asdict(settings.profile.cost),
        "traffic": dataclasses.asdict(settings.profile.traffic),
        "sessions": dataclasses.asdict(settings.profile.sessions),
        "versions": versions(),
        "command": sys.argv,
        "started": started,
    }
    write_result_file(run_dir, result)
    return result
