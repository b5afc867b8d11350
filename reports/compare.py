"""`llmcap compare RUN_DIR...`: variants of one profile side by side (comparison.md/.html/.json).

The first variant is the baseline; changes are relative to it. Runs with the same label are
repeats of one variant (`llmcap plan --repeats N`): the variant's figure is their median. Each
change in max sustained rate comes with an interval and a verdict, `significant` or `within
noise` (`rate_change`). Latency is compared at a common rate that every variant sustained (the
lowest max sustained rate), interpolated from each run's steps, so a faster variant is not
penalised for being pushed harder. Where the runs scored their answers (`llmcap plan`'s quality
pass), each variant's accuracy stands beside its speed, with its agreement with the baseline and
the gate's verdict (reports/quality.py).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from llmcap.confidence import SEARCH_INTERVAL_COVERAGE, interval_label, t_quantile
from llmcap.rundir import CLOSED_LOOP_DIR, PLAN_FILE, read_accuracy, read_result
from reports import plots
from reports.capacity import capacity, stand_in_banner
from reports.fleet import cheapest
from reports.quality import agreement, gate, relative_accuracy
from reports.render import Link, fmt, gib, pct, usd, write
from reports.report import CLOSED_LOOP_COLUMNS, CLOSED_LOOP_NOTE, closed_loop_cells, slo_text


def slos_text(groups: dict[str, list[dict]]) -> str:
    """The SLO every variant was searched under, or each variant's where they differ."""
    texts = {label: slo_text(caps[0]["slo"]) for label, caps in groups.items()}
    if len(set(texts.values())) <= 1:
        return next(iter(texts.values()), "–")
    return "; ".join(f"{label}: {text}" for label, text in texts.items()) + " (they differ: compare with care)"


def interpolate_at(cap: dict, rate: float, key: str) -> float | None:
    """`key` at `rate`, interpolated over the steps that passed: one per rate, the confirmation where
    a rate has one (a longer window than the step it confirms; two points at one rate would make
    the line through them a mean of two draws)."""
    by_rate: dict[float, dict] = {}
    for s in cap["per_step"]:
        if not s.get("passed") or s.get(key) is None or s.get("phase") == "partial":
            continue
        held = by_rate.get(s["offered_rps"])
        if held is None or s.get("phase") == "confirm" or held.get("phase") != "confirm":
            by_rate[s["offered_rps"]] = s
    if not by_rate:
        return None
    xs = sorted(by_rate)
    if rate < xs[0] or rate > xs[-1]:
        return None
    return float(np.interp(rate, xs, [by_rate[x][key] for x in xs]))


def change(new: float | None, base: float | None) -> float | None:
    if new is None or base in (None, 0):
        return None
    return new / base - 1


def memory_figure(cap: dict) -> float | None:
    """The memory figure that differs between variants: weights as served (logged by vLLM, else
    computed from the architecture at the served precision, else the checkpoint's files, which hold
    the stored dtype: a BF16 checkpoint served as FP32 takes twice its files)."""
    m = cap["memory"]
    return m.get("weights_gib_logged") or m.get("weights_gib_computed") or m.get("weights_gib_checkpoint")


def rate_change(runs: list[dict], base_runs: list[dict]) -> dict | None:
    """The change in max sustained rate against the baseline: point, interval, and whether it is real.

    With two or more searches of each, from their spread: a Welch t interval on the difference of
    the mean log rates, at the searches' confidence. With one search of either, from the searches'
    own intervals (each true maximum lies between a rate that passed and one that failed with
    confidence c): the change lies in [low_a / high_b - 1, high_a / low_b - 1], and a claim that it
    is above (or below) zero rests on two verdicts, so it holds with at least 1 - 2(1 - c).
    """
    a = [r["max_sustained_rps"] for r in runs if r.get("max_sustained_rps")]
    b = [r["max_sustained_rps"] for r in base_runs if r.get("max_sustained_rps")]
    if not a or not b:
        return None
    confidence = next(
        (r["max_sustained_rps_interval"]["confidence"] for r in runs if r.get("max_sustained_rps_interval")), 0.95
    )
    point = float(np.median(a) / np.median(b) - 1)
    high: float | None
    if len(a) >= 2 and len(b) >= 2:
        la, lb = np.log(a), np.log(b)
        va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
        diff, se = float(la.mean() - lb.mean()), math.sqrt(va + vb)
        if se > 0:
            df = se**4 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))  # Welch-Satterthwaite
            half = t_quantile(1 - (1 - confidence) / 2, max(1, math.floor(df))) * se
        else:
            half = 0.0
        low, high, level = math.exp(diff - half) - 1, math.exp(diff + half) - 1, confidence
        basis = f"{len(a)} and {len(b)} repeated searches"
        label = f"nominal {level * 100:g} % (Welch t over the repeats), coverage not measured"
    else:
        ia = (runs[0].get("max_sustained_rps_interval") or {}) if len(a) == 1 else {}
        ib = (base_runs[0].get("max_sustained_rps_interval") or {}) if len(b) == 1 else {}
        low_a, high_a = ia.get("low", min(a)), ia.get("high")
        low_b, high_b = ib.get("low", min(b)), ib.get("high")
        low = low_a / high_b - 1 if high_b else -1.0  # no failing rate of the baseline: no floor
        high = high_a / low_b - 1 if high_a else None
        fitted = ia.get("ends", "verdicts") != "verdicts"  # the estimator's intervals: no pass and fail
        level = 1 - 2 * (1 - confidence)
        basis = "one search each: " + ("their intervals' ends" if fitted else "their pass and fail rates")
        label = f"nominal {level * 100:g} %, were each search's interval right; one search's interval " + (
            ia.get("label") or SEARCH_INTERVAL_COVERAGE.label
        )
    significant = low > 0 or (high is not None and high < 0)
    return {
        "change": point,
        "low": low,
        "high": high,
        "confidence": level,
        "label": label,
        "basis": basis,
        "verdict": "significant" if significant else "within noise",
    }


def change_text(change: dict | None) -> str:
    """'+15 % (+9 % to +21 %), significant'."""
    if change is None:
        return "–"
    high = pct(change["high"], 0, signed=True) if change["high"] is not None else "unbounded"
    return (
        f"{pct(change['change'], 0, signed=True)} ({pct(change['low'], 0, signed=True)} to {high}), {change['verdict']}"
    )


def representative(runs: list[dict]) -> dict:
    """The repeat whose max sustained rate is the median (the lower middle for an even count)."""
    ranked = sorted(runs, key=lambda r: r.get("max_sustained_rps") or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def comparison(groups: dict[str, list[dict]]) -> dict:
    """`groups`: label -> the capacity dicts of its runs (repeats), the baseline first."""
    labels = list(groups)
    caps = reps(groups)
    base = caps[labels[0]]
    sustained = [c["max_sustained_rps"] for c in caps.values() if c.get("max_sustained_rps")]
    common = min(sustained) if len(sustained) == len(caps) else None
    rows = []
    for label, cap in caps.items():
        runs = groups[label]
        rates = [r["max_sustained_rps"] for r in runs if r.get("max_sustained_rps")]
        full = next((c for c in cap.get("cost") or [] if c["utilization"] == 1.0), None)
        rows.append(
            {
                "variant": label,
                "status": "ok" if cap.get("max_sustained_rps") else (cap.get("status") or "no sustained rate"),
                "repeats": len(runs),
                "max_sustained_rps": float(np.median(rates)) if rates else None,
                "max_sustained_rps_runs": [r.get("max_sustained_rps") for r in runs],
                "max_sustained_rps_spread": (max(rates) / min(rates) - 1) if len(rates) > 1 else None,
                "max_sustained_rps_interval": cap.get("max_sustained_rps_interval") if len(runs) == 1 else None,
                "max_sustained_rps_change": None if label == labels[0] else rate_change(runs, groups[labels[0]]),
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
                "fleet": cap.get("fleet"),
            }
        )
    return {"baseline": labels[0], "common_rate_rps": common, "variants": rows}


def rate_text(row: dict) -> str:
    """The max sustained rate as the table shows it: the figure, then how sure."""
    rps = fmt(row["max_sustained_rps"], 1)
    if row.get("repeats", 1) > 1:
        runs = ", ".join(fmt(r, 1) for r in row["max_sustained_rps_runs"])
        spread = pct(row["max_sustained_rps_spread"], 0) if row.get("max_sustained_rps_spread") is not None else "–"
        return f"{rps} (median of {row['repeats']}: {runs}; spread {spread})"
    interval = row.get("max_sustained_rps_interval")
    if interval:
        high = fmt(interval["high"], 1) if interval.get("high") is not None else "∞"
        return f"{rps} ({fmt(interval['low'], 1)}–{high})"
    return rps


def write_comparison(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    labels: list[str] | None = None,
    failures: dict[str, str] | None = None,
) -> dict:
    """Compare finished runs (runs with one label are repeats of it); `failures` names variants that
    produced no run (e.g. did not start)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[dict]] = {}
    dirs: dict[str, list[str]] = {}
    for i, run_dir in enumerate(run_dirs):
        cap = capacity(run_dir)
        label = (labels[i] if labels else None) or cap.get("variant") or Path(run_dir).name
        groups.setdefault(label, []).append(cap)
        dirs.setdefault(label, []).append(str(Path(run_dir)))
    data = comparison(groups) if groups else {"baseline": None, "common_rate_rps": None, "variants": []}
    for label, why in (failures or {}).items():
        data["variants"].append({"variant": label, "status": why})
    data["runs"] = dirs
    data["quality"] = quality(dirs, data["baseline"]) if data["baseline"] else {}
    for v in data["variants"]:
        if ((data["quality"].get(v["variant"]) or {}).get("gate") or {}).get("verdict") == "fail":
            v["status"] += ", fails the quality gate"
    # never the cheapest: a variant that held no rate or lost the answers
    eligible = {v["variant"] for v in data["variants"] if v.get("max_sustained_rps") and v["status"] == "ok"}
    data["cheapest_fleet"] = cheapest({v["variant"]: v.get("fleet") for v in data["variants"]}, eligible)
    data["closed_loop"] = closed_loop_levels(dirs)
    (out_dir / "comparison.json").write_text(json.dumps(data, indent=1))

    rows = []
    for v in data["variants"]:
        if v.get("max_sustained_rps") is None and "weights_gib" not in v:
            rows.append([v["variant"], v["status"]] + ["–"] * 8)
            continue
        rows.append(
            [
                v["variant"],
                v["status"],
                rate_text(v),
                "baseline" if v["variant"] == data["baseline"] else change_text(v["max_sustained_rps_change"]),
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
    changes = [v["max_sustained_rps_change"] for v in data["variants"] if v.get("max_sustained_rps_change")]
    blocks: list[tuple] = [
        ("h1", title),
        (
            "p",
            f"Baseline: {data['baseline']}. Changes in parentheses are relative to it. "
            f"Common rate (sustained by every variant): {fmt(common, 1)} req/s. SLO: {slos_text(groups)}.",
        ),
        *[
            ("note", banner)
            for banner in [stand_in_banner(sorted({t for caps in groups.values() for t in caps[0]["stand_in"]}))]
            if banner
        ],
        (
            "table",
            [
                "variant",
                "status",
                "max sustained req/s (how sure)",
                "change in max sustained rate (interval), real?",
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
    if changes:
        c = changes[0]
        blocks.append(
            (
                "note",
                f"How sure: a change is 'significant' when its interval excludes zero, 'within noise' when not. "
                f"Intervals from {c['basis']}: {interval_label(c)}. A single search's interval "
                "runs from the highest rate that passed with confidence to the lowest that failed with confidence; "
                "`llmcap plan --repeats N` narrows a comparison with repeated, interleaved searches.",
            )
        )
    if data["quality"]:
        stand_in = any(caps[0]["stand_in"] for caps in groups.values())
        blocks += quality_blocks(data["quality"], data["baseline"], stand_in)
    blocks += fleet_blocks(data) + closed_loop_blocks(data)
    if groups:
        caps = reps(groups)
        images = [
            (plots.latency_vs_rate(caps, out_dir / "latency_vs_rate.png"), "latency vs offered rate"),
            (plots.achieved_vs_offered(caps, out_dir / "achieved_vs_offered.png"), "achieved vs offered"),
            (plots.pareto(caps, out_dir / "pareto.png"), "throughput per GPU against latency, every step (Pareto)"),
        ]
        fleets = {v["variant"]: v.get("fleet") or {} for v in data["variants"]}
        fleet_png = plots.replicas_over_trace(fleets, out_dir / "replicas_over_trace.png")
        if fleet_png:
            images.append((fleet_png, "replicas over the traffic trace"))
        blocks += [("h2", "Plots")] + [("img", str(p), alt) for p, alt in images]
        # relative to the comparison, so the links hold wherever the directory is copied
        blocks += [("h2", "Runs")] + [("p", [f"{label}: ", *run_links(dirs[label], out_dir)]) for label in groups]
    if (out_dir / PLAN_FILE).is_file():
        blocks += [("p", ["The plan: ", Link("index", "index"), "."])]
    write(blocks, out_dir, "comparison", title)
    return data


LEVEL_KEYS = ("concurrency", "achieved_rps", "p50_ms", "p95_ms", "p99_ms", "ttft_p95_ms", "mean_completion_tokens")


def closed_loop_levels(dirs: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Each variant's closed-loop sweep (`llmcap plan --concurrency`), where it ran: its levels."""
    out = {}
    for label, run_dirs in dirs.items():
        result = read_result(Path(run_dirs[0]) / CLOSED_LOOP_DIR)
        if result and result.get("mode") == "concurrency":
            keys = (
                "concurrency",
                "achieved_rps",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "ttft_p95_ms",
                "mean_completion_tokens",
            )
            out[label] = [{k: s.get(k) for k in keys} for s in result["steps"]]
    return out


def closed_loop_blocks(data: dict) -> list[tuple]:
    """The other view of each server beside its sustained rate: what it did with N requests kept open."""
    if not data["closed_loop"]:
        return []
    sustained = {v["variant"]: v.get("max_sustained_rps") for v in data["variants"]}
    rows = [
        [label, *closed_loop_cells(level), fmt(sustained.get(label), 1)]
        for label, levels in data["closed_loop"].items()
        for level in levels
    ]
    header = ["variant", *CLOSED_LOOP_COLUMNS, "max sustained req/s"]
    note = CLOSED_LOOP_NOTE + " Each variant's sweep ran on its own server right after its search."
    return [("h2", "Closed loop"), ("table", header, rows), ("note", note)]


def fleet_blocks(data: dict) -> list[tuple]:
    """Each variant's fleet for the profile's traffic forecast, and the cheapest eligible one."""
    with_fleet = [v for v in data["variants"] if v.get("fleet")]
    if not with_fleet:
        return []
    first = with_fleet[0]["fleet"]
    trace = any(v["fleet"].get("trace") for v in with_fleet)
    header = ["variant", "replicas at peak", "… at the interval's low end", "fixed fleet $ / month"]
    header += ["$ / 1M requests (fixed)"]
    header += ["following the trace $ / month", "$ / 1M requests (trace)"] if trace else []
    rows = []
    for v in with_fleet:
        f = v["fleet"]
        low = f.get("replicas_at_peak_if_rate_is_low") or f["replicas_at_peak"]  # None: the answer is the low end
        row = [v["variant"], str(f["replicas_at_peak"]), str(low), usd(f["fixed_fleet_usd_per_month"])]
        row.append(usd(f["fixed_fleet_usd_per_million_requests"]))
        if trace:
            row += [usd(f["trace"]["usd_per_month"]), usd(f["trace"]["usd_per_million_requests"])]
        rows.append(row)
    best = data.get("cheapest_fleet")
    verdict = (
        f"Cheapest that held the SLO and kept the answers: {best}."
        if best
        else "No variant both held the SLO and kept the answers: none is named."
    )
    return [
        ("h2", "Fleet for the forecast"),
        (
            "p",
            f"Peak {fmt(first['peak_rps'], 1)} req/s, average {fmt(first['average_rps'], 1)} req/s; replicas loaded "
            f"to {pct(first['target_utilization'])} of their max sustained rate at peak, +{first['spare_replicas']} "
            "spare; the replicas needed if the true maximum sits at its interval's low end beside them. "
            f"{verdict}",
        ),
        ("table", header, rows),
    ]


def quality(dirs: dict[str, list[str]], baseline: str) -> dict[str, dict]:
    """Each variant's quality pass (its first run's), against the baseline's; the baseline's own
    second pass, where there is one, is the noise floor of agreement. Prompts without reference
    answers were scored against the baseline's first pass: there the baseline's row is its second
    pass (how close it comes to itself) and each variant's score is taken as a share of that."""
    first = read_accuracy(dirs[baseline][0]) if baseline in dirs else None
    reference_free = first is not None and first[1].get("references", "dataset") is None
    base = read_accuracy(dirs[baseline][0], 2) if reference_free else first
    out = {}
    for label, run_dirs in dirs.items():
        found = read_accuracy(run_dirs[0])
        if found is None:
            continue
        answers, summary = found
        if label == baseline and reference_free:
            answers, summary = base or found
        metric = summary["metric"]
        row = {k: summary.get(k) for k in ("metric", "accuracy", "interval", "n", "errors")}
        row["references"] = summary.get("references", "dataset")  # older runs: always the dataset's
        if label == baseline:
            again = read_accuracy(run_dirs[0], 2)
            row["agreement"] = agreement(again[0], first[0], metric) if again and first else None
        elif base is not None and summary["accuracy"] is not None and _against(summary, run_dirs[0], dirs[baseline][0]):
            row["agreement"] = agreement(answers, first[0], metric) if first else None
            row["relative"] = relative_accuracy(answers, base[0], metric)
            row["gate"] = gate(row["relative"], summary["threshold"])
        out[label] = row
    return out


def _against(summary: dict, run_dir: str, baseline_dir: str) -> bool:
    """Scored against the dataset's answers, or against this baseline's (not another run's)."""
    if summary.get("references", "dataset") == "dataset":
        return True
    against = summary.get("against")
    return against is not None and (Path(run_dir) / against).resolve() == Path(baseline_dir).resolve()


def quality_blocks(found: dict[str, dict], baseline: str, stand_in: bool) -> list:
    rows = []
    for label, q in found.items():
        interval = q["interval"]
        agree = q.get("agreement")
        rel, verdict = q.get("relative"), q.get("gate")
        scored = (
            f"{pct(q['accuracy'], 1)} ({pct(interval['low'], 0)}–{pct(interval['high'], 0)}), {q['n']} prompts"
            if interval
            else f"not scored, {q['n']} prompts"
        )
        rows.append(
            [
                label,
                scored + (f", {q['errors']} failed" if q["errors"] else ""),
                "baseline"
                if label == baseline
                else (f"{pct(rel['relative'], 1)} ({pct(rel['low'], 1)}–{pct(rel['high'], 1)})" if rel else "–"),
                (f"{pct(agree['identical'], 0)} / {pct(agree['same_score'], 0)}" if agree else "–")
                + (" (its two passes)" if agree and label == baseline else ""),
                "–"
                if verdict is None
                else verdict["verdict"]
                + (f" (sure: {'yes' if verdict['sure'] else 'no, within noise'})" if "sure" in verdict else "")
                + (f": {verdict['why']}" if "why" in verdict else ""),
            ]
        )
    metric = next(iter(found.values()))["metric"]
    reference_free = any(q.get("references") != "dataset" for q in found.values())
    if reference_free:
        scored_by = (
            f"The prompts carry no reference answers: each variant's answer is scored by {metric} against the "
            "baseline's answer to the same prompt, and the baseline's own row scores its second pass against its "
            "first, the noise floor (the engine batches differently from one pass to the next). Without "
            "references the gate tells whether the answers stayed as they were, not whether they got worse: "
            "read the answers that changed (accuracy/answers.jsonl) before trusting a variant that fails it."
        )
    else:
        scored_by = (
            f"Each answer is scored by {metric} against the dataset's reference answers. The baseline's agreement "
            "row compares its two passes, the noise floor (the engine batches differently from one pass to the next)."
        )
    notes = [
        "Each variant answered every prompt once at temperature 0 (the baseline twice); the answers' text is "
        f"kept in each run directory (accuracy/answers.jsonl). {scored_by} Agreement: the share of prompts "
        "answered identically to the baseline / scored the same. The gate passes a variant whose score reaches "
        "its threshold of the baseline's (MLPerf Inference's 99 %); 'sure' says whether the interval on the share "
        "of the baseline's agrees: a paired bootstrap over the prompts, nominal 95 %, its coverage not measured."
    ]
    if stand_in and not reference_free:
        notes.append("A stand-in model with random weights answers nothing right: its accuracy is near zero by design.")
    labels = sorted({interval_label(q["interval"]) for q in found.values() if q["interval"]})
    return [
        ("h2", "Answers"),
        (
            "table",
            [
                "variant",
                f"{metric} ({'; '.join(labels)})",
                "of the baseline's (interval)",
                "identical / same score as the baseline",
                "quality gate",
            ],
            rows,
        ),
        *[("note", n) for n in notes],
    ]


def run_links(run_dirs: list[str], out_dir: Path) -> list:
    """Links to each run's report, relative to `out_dir`, comma-separated."""
    links = [Link(target, target) for target in (os.path.relpath(Path(d) / "report", out_dir) for d in run_dirs)]
    return [piece for link in links for piece in (", ", link)][1:]


def reps(groups: dict[str, list[dict]]) -> dict[str, dict]:
    """Each label's representative run (the median repeat)."""
    return {label: representative(runs) for label, runs in groups.items()}
