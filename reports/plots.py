"""The report's plots, as PNG files. Each takes plain numbers (capacity dicts, telemetry scrapes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import patches, ticker  # noqa: E402

from llmcap.profile import Slo  # noqa: E402
from llmcap.rundir import load_scrapes, telemetry_path  # noqa: E402
from llmcap.slo import Bound  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a legend beside the axes stays in
    plt.close(fig)
    return path


def e2e_bound(record: dict) -> Bound | None:
    """The SLO's first end-to-end bound, the one a plot of end-to-end latency can draw."""
    return next((b for b in Slo.from_record(record).latency_bounds() if b.metric == "e2e"), None)


def latency_vs_rate(runs: dict[str, dict], path: Path) -> Path:
    return _save(latency_figure(runs), path)


def latency_figure(runs: dict[str, dict]):
    """p50/p95/p99 end-to-end latency against offered rate, one colour per run: each step's verdict
    on its p95 mark, the answer as a line and its interval as a band, and the SLO's bound."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    slo = None
    for label, cap in runs.items():
        steps = sorted((s for s in cap["per_step"] if s["p95_ms"] is not None), key=lambda s: s["offered_rps"])
        x = [s["offered_rps"] for s in steps]
        (line,) = ax.plot(x, [s["p95_ms"] for s in steps], "-", label=f"{label} p95")
        color = line.get_color()
        ax.plot(x, [s["p50_ms"] for s in steps], "--", color=color, alpha=0.6, label=f"{label} p50")
        ax.plot(x, [s["p99_ms"] for s in steps], ":", color=color, alpha=0.6, label=f"{label} p99")
        for verdict in VERDICTS:
            mine = [s for s in steps if _verdict(s) == verdict]
            _verdict_marks(ax, [s["offered_rps"] for s in mine], [s["p95_ms"] for s in mine], verdict, color)
        _answer_marks(ax, label, cap, color, x)
        slo = e2e_bound(cap["slo"])
    for verdict in VERDICTS:  # one legend entry per verdict, in no run's colour
        _verdict_marks(ax, [], [], verdict, "grey", VERDICT_LABELS[verdict])
    if slo:
        ax.axhline(slo.limit_ms, color="red", linestyle="-.", label=f"SLO {slo.describe()}")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the data, not over it
    return fig


VERDICTS = ("pass", "marginal", "fail")
VERDICT_LABELS = {"pass": "step passed", "marginal": "step marginal (counts as failed)", "fail": "step failed"}


def _verdict_marks(ax, xs: list, ys: list, verdict: str, color, label: str | None = None) -> None:
    """A step's verdict on its p95 mark: filled for a pass, hollow for marginal, a cross for a failure."""
    if verdict == "fail":
        ax.scatter(xs, ys, marker="x", s=28, color=color, zorder=3, label=label)
    else:
        face = color if verdict == "pass" else "none"
        ax.scatter(xs, ys, marker="o", s=28, edgecolors=color, facecolors=face, zorder=3, label=label)


def _verdict(step: dict) -> str:
    """pass, marginal or fail, as the steps table says it (a pass the generator could not vouch for fails)."""
    decision = step.get("decision") or ("pass" if step["passed"] else "fail")
    return "fail" if decision == "pass" and not step["passed"] else decision


def _answer_marks(ax, label: str, cap: dict, color, rates: list) -> None:
    """The answer as a vertical line and where the true maximum lies as a band, both in the legend."""
    rps = cap.get("max_sustained_rps")
    if not rps:
        return
    ax.axvline(rps, color=color, alpha=0.5, label=f"{label} max sustained {rps:.1f} req/s")
    interval = cap.get("max_sustained_rps_interval") or {}
    if interval.get("low") is not None:
        high = interval.get("high")
        right = high if high is not None else max(rates, default=rps)
        ends = f"{interval['low']:.1f}-{high:.1f}" if high is not None else f"{interval['low']:.1f} and up"
        ax.axvspan(interval["low"], right, color=color, alpha=0.12, label=f"{label} interval {ends} req/s")


def plain_log_ticks(axis) -> None:
    """A log axis labelled in plain numbers (4000, not 4x10^3); within one decade the minor ticks
    carry the labels, as there may be no power of ten inside."""
    axis.axes.autoscale_view()
    low, high = axis.get_view_interval()
    plain = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    axis.set_major_formatter(plain)
    narrow = low > 0 and high / low < 10
    axis.set_minor_formatter(plain if narrow else ticker.NullFormatter())


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
    ("gpu", "llmcap_gpu_utilization_ratio", "GPU busy (%)", 100.0),
    ("gpu", "llmcap_gpu_power_watts", "GPU power (W)", 1.0),
    ("vllm", "vllm:kv_cache_usage_perc", "KV cache in use (%)", 100.0),  # a fraction, despite its name
    ("vllm", "vllm:num_requests_running", "requests running", 1.0),
    ("vllm", "vllm:num_requests_waiting", "requests waiting", 1.0),
]
COUNTS = ("requests running", "requests waiting")
SHADES = {"pass": ("green", None), "marginal": ("orange", "//"), "fail": ("red", None)}


def server_over_time(run_dir: Path, cap: dict, path: Path) -> Path | None:
    """Telemetry over the run with the measured windows shaded; None when nothing was scraped."""
    fig = server_figure(run_dir, cap)
    return _save(fig, path) if fig else None


def server_figure(run_dir: Path, cap: dict):
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
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 1.6 * len(series) + 0.9), sharex=True)
    axes = axes if len(series) > 1 else [axes]
    for ax, (label, points) in zip(axes, series):
        ax.plot([t - t0 for t, _ in points], [v for _, v in points], linewidth=1)
        ax.set_ylabel(label, fontsize=7)
        ax.grid(alpha=0.3)
        if label in COUNTS:  # whole numbers from 0, and a flat zero still spans one request
            ax.set_ylim(bottom=0, top=max(1.0, 1.05 * max(v for _, v in points)))
            ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        for s in cap["per_step"]:
            if s.get("start") and s.get("end"):
                color, hatch = SHADES[_verdict(s)]
                ax.axvspan(s["start"] - t0, s["end"] - t0, facecolor=color, alpha=0.1, hatch=hatch, edgecolor=color)
    handles = [
        patches.Patch(facecolor=color, alpha=0.3, hatch=hatch, edgecolor=color, label=f"measured window: {verdict}")
        for verdict, (color, hatch) in SHADES.items()
    ]
    axes[0].legend(handles=handles, fontsize=7, loc="upper left", ncol=3)
    axes[-1].set_xlabel("seconds since the first scrape")
    return fig


def replicas_over_trace(fleets: dict[str, dict], path: Path) -> Path | None:
    fig = replicas_figure(fleets)
    return _save(fig, path) if fig else None


def replicas_figure(fleets: dict[str, dict]):
    """Replicas each minute of the traffic trace needs, one line per variant (each its own dash, so
    equal ones stay visible), over the trace's own rate."""
    with_trace = {label: f for label, f in fleets.items() if f and f.get("trace")}
    if not with_trace:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    first = next(iter(with_trace.values()))["trace"]
    traffic = ax.twinx()
    if first.get("rps_by_minute"):
        rps = first["rps_by_minute"]
        traffic.fill_between([m / 60.0 for m in range(len(rps))], rps, step="post", color="grey", alpha=0.2)
        traffic.set_ylabel("traffic (req/s)")
        traffic.set_ylim(bottom=0)
    ax.set_zorder(traffic.get_zorder() + 1)  # the replica lines over the traffic
    ax.patch.set_visible(False)
    styles = itertools.cycle(zip(("-", "--", ":", "-."), (3.0, 2.0, 1.6, 1.2), strict=True))
    for (label, fleet), (dash, width) in zip(with_trace.items(), styles):
        by_minute = fleet["trace"]["replicas_by_minute"]
        hours = [m / 60.0 for m in range(len(by_minute))]
        ax.step(
            hours,
            by_minute,
            where="post",
            linestyle=dash,
            linewidth=width,
            label=f"{label} (fixed fleet: {fleet['replicas_at_peak']})",
        )
    if first.get("rps_by_minute"):
        ax.fill_between([], [], color="grey", alpha=0.2, label="traffic (right axis)")
    ax.set_xlabel("hours into the trace")
    ax.set_ylabel("replicas needed")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


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
    plain_log_ticks(left.xaxis)
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
