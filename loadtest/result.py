"""result.json: the run's answer, its steps, and how it was produced."""
from __future__ import annotations

import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path

from loadtest.samples import read_samples
from loadtest.stats import summarize_window

LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms")


def _clean(value):
    """JSON has no NaN: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("llmcap", "locust", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def write_result(settings, outcome, started: float | None, partial: bool) -> dict:
    """Write result.json. With no outcome (interrupted), steps are rebuilt from steps.jsonl."""
    run_dir = Path(settings.run_dir)
    steps = outcome.steps if outcome else _steps_so_far(run_dir)
    if partial and not steps:
        samples, itl = read_samples(run_dir)
        if len(samples):
            # no step finished: summarise what was measured, so the samples are not lost from view
            summary = summarize_window(samples, itl, float(samples["scheduled_s"].min()),
                                       float(samples["scheduled_s"].max()) + 1e-6)
            steps = [{"index": 0, "phase": "partial", "offered_rps": summary["arrival_rps"], **summary,
                      "passed": False, "reason": "interrupted before the step finished",
                      "generator_bottleneck": False}]
    confirmed = [s for s in steps if s.get("phase") in ("confirm", "fixed") and s["passed"]]
    at_max = confirmed[-1] if confirmed else None
    result = {
        "name": settings.name,
        "mode": "fixed" if settings.rps is not None else "search",
        "partial": partial,
        "max_sustained_rps": outcome.max_sustained_rps if outcome else None,
        "first_failing_rps": outcome.first_failing_rps if outcome else None,
        "generator_bottleneck": outcome.generator_bottleneck if outcome else None,
        "slo": {"p95_ms": settings.slo.p95_ms, "p99_ms": settings.slo.p99_ms,
                "ttft_p95_ms": settings.slo.ttft_p95_ms, "max_error_rate": settings.slo.max_error_rate,
                "min_achieved_ratio": settings.slo.min_achieved_ratio},
        "search": vars(settings.search),
        "latency_at_max": {k: at_max[k] for k in LATENCY_KEYS} if at_max else None,
        "steps": steps,
        "model": settings.model,
        "host": settings.host,
        "request": {k: v for k, v in settings.request.items() if k != "api_key_env"},
        "arrival": settings.arrival,
        "profile": settings.profile["_file"] if settings.profile else None,
        "cost": settings.profile["cost"] if settings.profile else None,
        "versions": versions(),
        "command": sys.argv,
        "started": started,
    }
    path = run_dir / "result.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(result), indent=1))
    tmp.replace(path)
    return result


def _steps_so_far(run_dir: Path) -> list[dict]:
    path = run_dir / "steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_step(run_dir: Path, step: dict) -> None:
    with open(Path(run_dir) / "steps.jsonl", "a") as f:
        f.write(json.dumps(_clean(step)) + "\n")
