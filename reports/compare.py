"""`llmcap compare RUN_DIR...`: variants of one profile side by side (comparison.md/.html/.json).

The first run is the baseline; changes are relative to it. Latency is compared at a
common rate that every run sustained (the lowest max sustained rate), interpolated
from each run's steps, so a faster variant is not penalised for being pushed harder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from reports import plots
from reports.capacity import capacity
from reports.render import fmt, gib, pct, usd, write


def interpolate_at(cap: dict, rate: float, key: str) -> float | None:
    steps = sorted(
        (s for s in cap["per_step"] if s.get(key) is not None and s.get("phase") != "partial"),
        key=lambda s: s["offered_rps"],
    )
    if not steps:
        return None
    xs = [s["offered_rps"] for s in steps]
    if rate < xs[0] or rate > xs[-1]:
        return None
    return float(np.interp(rate, xs, [s[key] for s in steps]))


def change(new: float | None, base: float | None) -> float | None:
    if new is None or base in (None, 0):
        return None
    return new / base - 1


def memory_figure(cap: dict) -> float | None:
    """The memory figure that differs between variants: weights (logged by vLLM, else computed)."""
    m = cap["memory"]
    return m.get("weights_gib_logged") or m.get("weights_gib_computed")


def comparison(caps: dict[str, dict]) -> dict:
    labels = list(caps)
    base = caps[labels[0]]
    sustained = [c["max_sustained_rps"] for c in caps.values() if c.get("max_sustained_rps")]
    common = min(sustained) if len(sustained) == len(caps) else None
    rows = []
    for label, cap in caps.items():
        full = next((c for c in cap.get("cost") or [] if c["utilization"] == 1.0), None)
        rows.append(
            {
                "variant": label,
                "status": "ok" if cap.get("max_sustained_rps") else (cap.get("status") or "no sustained rate"),
                "max_sustained_rps": cap.get("max_sustained_rps"),
                "max_sustained_rps_change": change(cap.get("max_sustained_rps"), base.get("max_sustained_rps")),
                "p95_ms_at_max": (cap.get("latency_at_max") or {}).get("p95_ms"),
                "p50_ms_at_common_rate": interpolate_at(cap, common, "p50_ms") if common else None,
                "p95_ms_at_common_rate": interpolate_at(cap, common, "p95_ms") if common else None,
                "weights_gib": memory_figure(cap),
                "weights_change": change(memory_figure(cap), memory_figure(base)),
                "kv_cache_dtype": cap["memory"].get("kv_cache_dtype"),
                "kv_cache_size_tokens": cap["memory"].get("kv_cache_size_tokens"),
                "kv_cache_size_change": change(
                    cap["memory"].get("kv_cache_size_tokens"), base["memory"].get("kv_cache_size_tokens")
                ),
                "gpu_memory_used_peak_gib": cap["memory"].get("gpu_memory_used_peak_gib"),
                "usd_per_million_requests": full["usd_per_million_requests"] if full else None,
            }
        )
    return {"baseline": labels[0], "common_rate_rps": common, "variants": rows}


def write_comparison(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    labels: list[str] | None = None,
    failures: dict[str, str] | None = None,
) -> dict:
    """Compare finished runs; `failures` names variants that produced no run (e.g. did not start)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    caps: dict[str, dict] = {}
    for i, run_dir in enumerate(run_dirs):
        cap = capacity(run_dir)
        label = (labels[i] if labels else None) or cap.get("variant") or Path(run_dir).name
        caps[label] = cap
    data = comparison(caps) if caps else {"baseline": None, "common_rate_rps": None, "variants": []}
    for label, why in (failures or {}).items():
        data["variants"].append({"variant": label, "status": why})
    data["runs"] = {label: str(Path(d)) for label, d in zip(caps, run_dirs)}
    (out_dir / "comparison.json").write_text(json.dumps(data, indent=1))

    rows = []
    for v in data["variants"]:
        if v.get("max_sustained_rps") is None and "weights_gib" not in v:
            rows.append([v["variant"], v["status"]] + ["–"] * 7)
            continue
        rows.append(
            [
                v["variant"],
                v["status"],
                f"{fmt(v['max_sustained_rps'], 1)} ({pct(v['max_sustained_rps_change'], 0)})",
                fmt(v["p95_ms_at_max"]),
                fmt(v["p95_ms_at_common_rate"]),
                f"{gib(v['weights_gib'])} ({pct(v['weights_change'], 0)})",
                f"{v['kv_cache_dtype'] or '–'}, {fmt(v['kv_cache_size_tokens'])} ({pct(v['kv_cache_size_change'], 0)})",
                gib(v["gpu_memory_used_peak_gib"]),
                usd(v["usd_per_million_requests"]),
            ]
        )
    common = data["common_rate_rps"]
    title = "llmcap comparison: " + ", ".join(v["variant"] for v in data["variants"])
    blocks = [
        ("h1", title),
        (
            "p",
            f"Baseline: {data['baseline']}. Changes in parentheses are relative to it. "
            f"Common rate (sustained by every variant): {fmt(common, 1)} req/s.",
        ),
        (
            "table",
            [
                "variant",
                "status",
                "max sustained req/s (change)",
                "p95 at max (ms)",
                "p95 at common rate (ms)",
                "weights (change)",
                "KV cache dtype, tokens (change)",
                "peak GPU memory",
                "$ / 1M requests at 100 %",
            ],
            rows,
        ),
    ]
    if caps:
        images = [
            (plots.latency_vs_rate(caps, out_dir / "latency_vs_rate.png"), "latency vs offered rate"),
            (plots.achieved_vs_offered(caps, out_dir / "achieved_vs_offered.png"), "achieved vs offered"),
        ]
        blocks += [("h2", "Plots")] + [("img", str(p), alt) for p, alt in images]
        # relative to the comparison, so the links hold wherever the directory is copied
        blocks += [("h2", "Runs")] + [
            ("p", f"{label}: {os.path.relpath(Path(data['runs'][label]) / 'report.html', out_dir)}") for label in caps
        ]
    write(blocks, out_dir, "comparison", title)
    return data
