"""The report's plots, as PNG files. Each takes plain numbers (capacity dicts, telemetry scrapes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from llmcap.profile import Slo  # noqa: E402
from llmcap.rundir import load_scrapes, telemetry_path  # noqa: E402
from llmcap.slo import Bound  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def e2e_bound(record: dict) -> Bound | None:
    """The SLO's first end-to-end bound, the one a plot of end-to-end latency can draw."""
    return next((b for b in Slo.from_record(record).latency_bounds() if b.metric == "e2e"), None)


def latency_vs_rate(runs: dict[str, dict], path: Path) -> Path:
    """p50/p95/p99 end-to-end latency against offered rate, one colour per run, with the SLO line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    slo = None
    for label, cap in runs.items():
        steps = sorted((s for s in cap["per_step"] if s["p95_ms"] is not None), key=lambda s: s["offered_rps"])
        x = [s["offered_rps"] for s in steps]
        (line,) = ax.plot(x, [s["p95_ms"] for s in steps], "o-", label=f"{label} p95")
        ax.plot(x, [s["p50_ms"] for s in steps], "--", color=line.get_color(), alpha=0.6, label=f"{label} p50")
        ax.plot(x, [s["p99_ms"] for s in steps], ":", color=line.get_color(), alpha=0.6, label=f"{label} p99")
        if cap.get("max_sustained_rps"):
            ax.axvline(cap["max_sustained_rps"], color=line.get_color(), alpha=0.3)
        slo = e2e_bound(cap["slo"])
    if slo:
        ax.axhline(slo.limit_ms, color="red", linestyle="-.", label=f"SLO {slo.describe()}")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def achieved_vs_offered(runs: dict[str, dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    top = 0.0
    for label, cap in runs.items():
        steps = sorted(cap["per_step"], key=lambda s: s["offered_rps"])
        x = [s["offered_rps"] for s in steps]
        ax.plot(x, [s["achieved_rps"] for s in steps], "o-", label=label)
        top = max([top, *x])
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="achieved = offered")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("completed (req/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


SERVER_SERIES = [
    ("gpu", "llmcap_gpu_memory_used_bytes", "GPU memory used (GiB)", 2**-30),
    ("gpu", "llmcap_gpu_utilization_ratio", "GPU utilization", 1.0),
    ("gpu", "llmcap_gpu_power_watts", "GPU power (W)", 1.0),
    ("vllm", "vllm:kv_cache_usage_perc", "KV cache in use", 1.0),
    ("vllm", "vllm:num_requests_running", "requests running", 1.0),
    ("vllm", "vllm:num_requests_waiting", "requests waiting", 1.0),
]


def server_over_time(run_dir: Path, cap: dict, path: Path) -> Path | None:
    """Telemetry over the run with the measured windows shaded; None when nothing was scraped."""
    series = []
    for target, name, label, scale in SERVER_SERIES:
        scrapes = load_scrapes(telemetry_path(run_dir, target))
        points = [
            (t, sum(v for n, _l, v in rows if n == name) * scale)
            for t, rows in scrapes
            if any(n == name for n, _l, _v in rows)
        ]
        if points:
            series.append((label, points))
    if not series:
        return None
    t0 = min(p[0][0] for _label, p in series)
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 1.6 * len(series) + 0.6), sharex=True)
    axes = axes if len(series) > 1 else [axes]
    for ax, (label, points) in zip(axes, series):
        ax.plot([t - t0 for t, _ in points], [v for _, v in points], linewidth=1)
        ax.set_ylabel(label, fontsize=7)
        ax.grid(alpha=0.3)
        for s in cap["per_step"]:
            if s.get("start") and s.get("end"):
                ax.axvspan(s["start"] - t0, s["end"] - t0, color="green" if s["passed"] else "red", alpha=0.08)
    axes[-1].set_xlabel("seconds since the first scrape (shaded: measured windows, green passed, red failed)")
    return _save(fig, path)


def replicas_over_trace(fleets: dict[str, dict], path: Path) -> Path | None:
    """Replicas each minute of the traffic trace needs, one line per variant, beside the trace's rate."""
    with_trace = {label: f for label, f in fleets.items() if f and f.get("trace")}
    if not with_trace:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, fleet in with_trace.items():
        by_minute = fleet["trace"]["replicas_by_minute"]
        hours = [m / 60.0 for m in range(len(by_minute))]
        ax.step(hours, by_minute, where="post", label=f"{label} (fixed fleet: {fleet['replicas_at_peak']})")
    ax.set_xlabel("hours into the trace")
    ax.set_ylabel("replicas needed")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other beats on both axes (lower latency and higher throughput), by latency."""
    front: list[tuple[float, float]] = []
    for latency, rate in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or rate > front[-1][1]:
            front.append((latency, rate))
    return front


def pareto(runs: dict[str, dict], path: Path) -> Path:
    """Throughput per GPU against p95 latency (and output tokens/s per GPU against each user's
    tokens/s) over every step of every variant, the frontier drawn through the best of all."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    everyone, everyone_tokens = [], []
    for label, cap in runs.items():
        gpus = cap.get("gpus_per_replica") or 1
        steps = [s for s in cap["per_step"] if s.get("p95_ms") and s.get("achieved_rps")]
        xs = [s["p95_ms"] for s in steps]
        ys = [s["achieved_rps"] / gpus for s in steps]
        (dots,) = left.plot(xs, ys, "o", alpha=0.7, label=label)
        everyone += list(zip(xs, ys, strict=True))
        tokens = [s for s in steps if s.get("itl_p50_ms") and s.get("mean_completion_tokens")]
        per_user = [1000.0 / s["itl_p50_ms"] for s in tokens]
        per_gpu = [s["achieved_rps"] * s["mean_completion_tokens"] / gpus for s in tokens]
        right.plot(per_user, per_gpu, "o", alpha=0.7, color=dots.get_color(), label=label)
        everyone_tokens += [(-u, g) for u, g in zip(per_user, per_gpu, strict=True)]  # more per user is better
    front = pareto_front(everyone)
    left.plot([p[0] for p in front], [p[1] for p in front], "k--", alpha=0.6, label="frontier")
    slo = e2e_bound(next(iter(runs.values()))["slo"]) if runs else None
    if slo and slo.percentile == 95:
        left.axvline(slo.limit_ms, color="red", linestyle="-.", label=f"SLO {slo.describe()}")
    left.set_xscale("log")
    left.set_xlabel("p95 end-to-end latency (ms)")
    left.set_ylabel("completed req/s per GPU")
    if everyone_tokens:
        front_t = pareto_front(everyone_tokens)
        right.plot([-p[0] for p in front_t], [p[1] for p in front_t], "k--", alpha=0.6, label="frontier")
    right.set_xlabel("tokens/s each user sees (1 / median inter-token latency)")
    right.set_ylabel("output tokens/s per GPU")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)
