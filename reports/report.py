"""`llmcap report RUN_DIR`: capacity.json, report.md, report.html and the PNG plots of one run."""

from __future__ import annotations

import os
from pathlib import Path

from llmcap.confidence import ESTIMATE_ENDS, interval_label
from llmcap.profile import Slo
from llmcap.rundir import plan_dir_of, read_accuracy
from llmcap.slo import ALWAYS_SHOWN
from reports import plots
from reports.capacity import stand_in_banner, write_capacity
from reports.render import Link, fmt, gib, model_text, pct, usd, write

HOSTED_NOTE = (
    "Hosted prices are list prices applied to the measured mean prompt and completion tokens. "
    "Hosted reasoning models may bill hidden reasoning tokens, so the hosted figure is a floor."
)


def notice_blocks(cap: dict) -> list[tuple]:
    """What must be read before any number: a stand-in, a partial run, a load generator that fell behind."""
    blocks: list[tuple] = []
    banner = stand_in_banner(cap.get("stand_in") or [])
    if banner:
        blocks.append(("note", banner))
    if cap.get("partial"):
        blocks.append(
            ("note", "PARTIAL RUN: interrupted before the search finished; numbers cover only what was measured.")
        )
    if cap.get("generator_bottleneck"):
        blocks.append(
            (
                "note",
                f"The load generator was the bottleneck ({cap['generator_bottleneck']}): "
                "no server verdict. Add load-generating processes and run again.",
            )
        )
    return blocks


def slo_text(record: dict) -> str:
    """'p95 ≤ 500 ms, errors ≤ 1 %': the SLO a result.json recorded, of any version."""
    return Slo.from_record(record).describe("≤")


def bound_rows(cap: dict, bounds, at: str) -> list[list[str]]:
    """Each bound's own percentile and the goodput where the latency was measured (runs since the
    bounds were generalized record them)."""
    measured = cap.get("at_bounds_at_max")
    if not measured:
        return []
    each = ", ".join(f"{b.name} {fmt(measured.get(b.key), 1)} of {b.limit_ms:g} ms" for b in bounds)
    goodput = cap.get("goodput_rps_at_max")
    attained = cap.get("slo_attainment_at_max")
    share = f" ({fmt(attained * 100, 1)} % of requests met every bound)" if attained is not None else ""
    return [[f"Each bound {at}", each], [f"Goodput {at}", f"{fmt(goodput, 1)} req/s{share}"]]


def headline_blocks(cap: dict) -> list[tuple]:
    bounds = Slo.from_record(cap["slo"]).latency_bounds()
    blocks = notice_blocks(cap)
    rps = cap.get("max_sustained_rps")
    lat = cap.get("latency_at_max") or {}
    mem = cap["memory"]
    interval = cap.get("max_sustained_rps_interval")
    measured_at = cap.get("latency_measured_at_rps")
    # latency is measured, not fitted: where the answer lies above the rate that passed, say where
    at = "at max" if measured_at is None or measured_at == rps else f"at {fmt(measured_at, 1)} req/s (passed)"
    rows = [
        [
            "Max sustained rate",
            f"{fmt(rps, 1)} req/s{fit_text(cap.get('max_sustained_rps_fit'))}" if rps else "none found",
        ],
        ["Where the true maximum lies", interval_text(interval)],
        ["SLO held", slo_text(cap["slo"])],
        *bound_rows(cap, bounds, at),
        [first_failing_label(cap), f"{fmt(cap.get('first_failing_rps'), 1)} req/s"],
        [
            f"Latency {at}, p50 / p95 / p99",
            f"{fmt(lat.get('p50_ms'))} / {fmt(lat.get('p95_ms'))} / {fmt(lat.get('p99_ms'))} ms",
        ],
        [f"TTFT {at}, p50 / p95", f"{fmt(lat.get('ttft_p50_ms'))} / {fmt(lat.get('ttft_p95_ms'))} ms"],
        [
            f"Inter-token latency {at}, p50 / p95",
            f"{fmt(lat.get('itl_p50_ms'), 1)} / {fmt(lat.get('itl_p95_ms'), 1)} ms",
        ],
        *(
            [
                [
                    f"Time per output token {at}, p50 / p99",
                    f"{fmt(lat['tpot_p50_ms'], 1)} / {fmt(lat.get('tpot_p99_ms'), 1)} ms",
                ]
            ]
            if lat.get("tpot_p50_ms") is not None
            else []
        ),
        ["Requests per day per GPU", fmt(cap.get("requests_per_day_per_gpu"))],
        [
            "Mean prompt / completion tokens",
            f"{fmt(cap.get('mean_prompt_tokens'), 1)} / {fmt(cap.get('mean_completion_tokens'), 1)}",
        ],
        [
            "Model weights (vLLM log / checkpoint files / computed)",
            f"{gib(mem['weights_gib_logged'])} / {gib(mem.get('weights_gib_checkpoint'))} / "
            f"{gib(mem['weights_gib_computed'])}",
        ],
        ["KV cache (dtype, capacity)", f"{mem['kv_cache_dtype'] or '–'}, {fmt(mem['kv_cache_size_tokens'])} tokens"],
        [
            "KV cache in use: peak at max sustained / over all steps",
            f"{pct(mem.get('kv_cache_usage_at_max'), 1)} / {pct(mem['kv_cache_usage_peak'], 1)}",
        ],
        [
            "Prompt tokens served from the prefix cache at max sustained",
            pct(((cap.get("server_at_max") or {}).get("prefix_cache_hit_rate")), 1),
        ],
        [
            "Peak GPU memory used (device / server processes)",
            f"{gib(mem['gpu_memory_used_peak_gib'])} / {gib(mem['server_process_memory_peak_gib'])}",
        ],
    ]
    blocks.append(("table", ["", cap.get("variant") or cap["name"]], rows))
    return blocks


CLOSED_LOOP_COLUMNS = ["concurrency", "req/s", "output tokens/s", "p50 / p95 / p99 ms", "TTFT p95 ms"]
CLOSED_LOOP_NOTE = (
    "Closed loop: each level kept that many requests open, each finished one replaced at once, so the server "
    "set the rate. The sustained rate under the SLO is the rate search's answer (users arrive on their own, "
    "open loop); Little's law ties the two views: requests open = rate x mean latency."
)


def closed_loop_cells(level: dict) -> list[str]:
    """One closed-loop level's CLOSED_LOOP_COLUMNS (a step of a `--concurrency` run)."""
    tokens_per_s = (level.get("mean_completion_tokens") or 0) * (level.get("achieved_rps") or 0)
    return [
        fmt(level.get("concurrency")),
        fmt(level["achieved_rps"], 2),
        fmt(tokens_per_s, 0),
        f"{fmt(level['p50_ms'])} / {fmt(level['p95_ms'])} / {fmt(level['p99_ms'])}",
        fmt(level["ttft_p95_ms"]),
    ]


def closed_loop_blocks(cap: dict) -> list[tuple]:
    """A closed-loop run (`--concurrency`): what the server did at each level. No capacity: nothing
    held the rate, the server set it."""
    rows = [
        closed_loop_cells(s) + [fmt(s["itl_p50_ms"], 1), pct(s["error_rate"], 1), verdict_text(s)]
        for s in cap["per_step"]
    ]
    header = CLOSED_LOOP_COLUMNS + ["ITL p50 ms", "errors", "SLO at this level"]
    note = (
        CLOSED_LOOP_NOTE + " Latency counts from when each request was due; a level's SLO verdict is judged once "
        "over its window, as a fixed-rate run is."
    )
    return [("h2", "Closed loop"), ("table", header, rows), ("note", note)]


def arrivals_text(cap: dict) -> str:
    """How the load arrived: what every latency here depends on."""
    if cap.get("mode") == "concurrency":
        return "Load: a closed loop (requests kept open at each level)."
    trace = cap.get("arrival_trace")
    if trace:
        return (
            f"Arrivals: the trace {trace['file']} ({trace['kind']}, {fmt(trace['duration_s'])} s at a mean "
            f"{fmt(trace['mean_rps'], 1)} req/s), played from its start at each step, sped up to the step's rate."
        )
    kind = cap.get("arrival") or "poisson"
    return {
        "poisson": "Arrivals: Poisson (independent gaps), open loop.",
        "poisson-blocked": "Arrivals: smoothed Poisson (a fixed count per ~2 s block), open loop: steadier than real "
        "traffic, so a queue looks stronger than it is (docs/arrivals.md).",
        "constant": "Arrivals: evenly spaced, open loop: steadier than real traffic.",
    }.get(kind, f"Arrivals: {kind}.")


def session_blocks(cap: dict) -> list[tuple]:
    """Multi-turn runs: latency and prompt length by turn, beside the prefix cache's share."""
    sessions = cap.get("sessions")
    if not sessions:
        return []
    rows = [
        [
            str(t["turn"]),
            fmt(t["requests"]),
            fmt(t["mean_prompt_tokens"], 1),
            fmt(t["p50_ms"]),
            fmt(t["p95_ms"]),
            fmt(t["ttft_p50_ms"]),
            fmt(t["errors"]),
        ]
        for t in sessions["by_turn"]
    ]
    text = (
        f"Conversations of {sessions['turns']} turns: each turn sends the previous turn's messages, its answer "
        f"and a new question, {fmt(sessions['think_seconds'], 1)} s (mean) after the answer came; sessions started "
        f"at the rate / {sessions['turns']}. At step {sessions['step']}, the prefix cache served "
        f"{pct(sessions.get('prefix_cache_hit_rate'), 1)} of all prompt tokens (vLLM's prefix_cache_hits over "
        "queries); later turns' prompts begin with the whole earlier conversation."
    )
    header = ["turn", "requests", "mean prompt tokens", "p50 ms", "p95 ms", "TTFT p50 ms", "errors"]
    return [("h2", "Sessions"), ("p", text), ("table", header, rows)]


def first_failing_label(cap: dict) -> str:
    if cap.get("search_method") == "estimate":  # its chunks are measurements, not verdicts
        return "Lowest rate found over the SLO (an overload, or where locating found it over)"
    # marginal steps count here, as the search counts them: the answer lies at or under this rate
    return "Lowest rate that did not pass (failed or marginal)"


def fit_text(fit: dict | None) -> str:
    """How the answer was found inside its interval (loadtest/search.py: knee_estimate)."""
    if not fit:
        return ""
    if not fit["fitted"]:
        # knee_estimate keeps the low end when it has too few rates near the knee to draw a line, or
        # when their fractions over do not rise with the rate (a machine that drifted mid-search)
        return " (the highest rate that passed: the steps near the knee fit no rising line)"
    basis = f"{fit['requests']:,} requests in {fit['steps']} steps"
    if fit.get("at_marginal"):  # undecided there, and the line crosses at or past it
        return f" (the line fitted over {basis} crosses at or past this rate, whose step was undecided: held at it)"
    return f" (where the fraction over the bound crosses the allowed, fitted over {basis})"


def interval_text(interval: dict | None) -> str:
    if not interval:
        return "–"
    low, high = fmt(interval["low"], 1), interval.get("high")
    if interval.get("ends") in ESTIMATE_ENDS:
        span = f"{low} req/s and up" if high is None else f"{low}–{fmt(high, 1)} req/s"
        return f"{span} ({ESTIMATE_ENDS[interval['ends']]}; {interval_label(interval)})"
    if high is None:
        span, ends = f"{low} req/s and up", f"passed at {low} req/s, no rate failed with confidence"
    else:
        span, ends = f"{low}–{fmt(high, 1)} req/s", f"passed at {low} req/s, failed at {fmt(high, 1)}"
    level = f"{interval['confidence'] * 100:g} %"
    return f"{span} ({ends}, each decided at {level}; {interval_label(interval)})"


def verdict_text(step: dict) -> str:
    decision = step.get("decision") or ("pass" if step["passed"] else "fail")
    if decision == "pass" and not step["passed"]:
        return "FAIL"  # the load generator fell behind
    return {"pass": "pass", "fail": "FAIL", "marginal": "marginal (counted as FAIL)"}.get(decision, decision)


def cost_blocks(cap: dict) -> list[tuple]:
    if not cap.get("cost"):
        return [("p", "No cost: no sustained rate was found.")]
    blocks: list[tuple] = [
        (
            "p",
            f"{cap['gpus_per_replica']} × {cap['gpu']} at ${cap['usd_per_gpu_hour']:.2f} per GPU-hour; "
            "$ per million requests = $/GPU-hour × GPUs / (req/s × 3600 × utilization) × 10^6.",
        )
    ]
    blocks.append(
        (
            "table",
            ["Utilization", "$ / 1M requests", "$ / 1M tokens (in+out)"],
            [
                [pct(c["utilization"]), usd(c["usd_per_million_requests"]), usd(c["usd_per_million_tokens"])]
                for c in cap["cost"]
            ],
        )
    )
    return blocks


def fleet_blocks(cap: dict) -> list[tuple]:
    fleet = cap.get("fleet")
    if not fleet:
        return []
    trace = fleet.get("trace")
    source = f", from a trace of {trace['minutes']:,} minutes" if trace else ""
    low = fleet.get("replicas_at_peak_if_rate_is_low")
    gpus_note = f" ({fleet['gpus_at_peak']} GPUs)" if fleet["gpus_at_peak"] != fleet["replicas_at_peak"] else ""
    rows = [
        ["Forecast: peak / average", f"{fmt(fleet['peak_rps'], 1)} / {fmt(fleet['average_rps'], 1)} req/s{source}"],
        [
            "Headroom",
            f"replicas loaded to {pct(fleet['target_utilization'])} of max sustained at peak, "
            f"+{fleet['spare_replicas']} spare",
        ],
        ["Replicas at peak", f"{fleet['replicas_at_peak']}{gpus_note}"],
    ]
    if low is not None:
        rows.append(["… if the true maximum is at its interval's low end", str(low)])
    rows += [
        ["Fixed fleet: $ per month", usd(fleet["fixed_fleet_usd_per_month"])],
        ["Fixed fleet: $ / 1M requests (idle capacity included)", usd(fleet["fixed_fleet_usd_per_million_requests"])],
        ["Fixed fleet: average utilization", pct(fleet["average_utilization"])],
    ]
    if trace:
        rows += [
            ["Following the trace (ideal autoscaling): $ per month", usd(trace["usd_per_month"])],
            ["Following the trace: $ / 1M requests", usd(trace["usd_per_million_requests"])],
        ]
    return [
        ("h2", "Fleet for the forecast"),
        ("table", ["", ""], rows),
        (
            "note",
            "replicas = ceil(rate / (max sustained × target utilization)) + spare (reports/fleet.py); "
            "a month is 730 hours.",
        ),
    ]


def hosted_blocks(cap: dict) -> list[tuple]:
    hosted = cap.get("hosted")
    if not hosted:
        return []
    ours = {c["utilization"]: c["usd_per_million_requests"] for c in cap.get("cost") or []}
    rows = [
        [
            r["name"],
            f"{r['input_usd_per_mtok']:.2f} / {r['output_usd_per_mtok']:.2f}",
            usd(r["usd_per_million_requests"]),
        ]
        for r in hosted["rows"]
    ]
    for u in sorted(ours, reverse=True):
        rows.append([f"self-hosted, {pct(u)} utilization", "–", usd(ours[u])])
    return [
        ("h2", f"Hosted APIs for the same requests (list prices as of {hosted['as_of']})"),
        ("table", ["", "$ per 1M input / output tokens", "$ / 1M requests"], rows),
        ("note", HOSTED_NOTE),
    ]


def limit_blocks(cap: dict) -> list[tuple]:
    limit = cap.get("hardware_limit")
    if not limit:
        return []
    if limit.get("no_peak"):
        return [
            ("h2", "Distance to the hardware limit"),
            ("note", f"{limit['gpu']}: {limit['no_peak']}, so no ceiling is computed for this run."),
        ]
    rows = [
        ["GPU peak (dense)", f"{limit['peak_tflops']:,.1f} TFLOPS {limit['precision'].upper()}"],
        ["FLOPs per request", f"{limit['gflops_per_request']:,.1f} GFLOP"],
        ["Compute ceiling", f"{limit['compute_ceiling_rps']:,.0f} req/s"],
        ["Model-FLOPs utilization (MFU) at max sustained", pct(limit["mfu"], 2)],
    ]
    if limit.get("vllm_mfu") is not None:
        rows.append(["vLLM's own estimate (--enable-mfu-metrics)", pct(limit["vllm_mfu"], 2)])
    if limit.get("bandwidth_ceiling_rps"):
        rows += [
            ["Memory bandwidth", f"{limit['bandwidth_tbs']:,.2f} TB/s"],
            [f"Batch at max sustained ({limit['batch_from']})", f"{limit['batch']:,.1f} requests"],
            ["Bytes read per decode step (weights + KV)", f"{limit['gb_per_decode_step']:,.2f} GB"],
            ["Bandwidth ceiling at that batch", f"{limit['bandwidth_ceiling_rps']:,.0f} req/s"],
            ["Model-bandwidth utilization (MBU) at max sustained", pct(limit["mbu"], 1)],
            ["Nearer limit", "compute (prefill-heavy)" if limit["mfu"] >= limit["mbu"] else "memory bandwidth"],
        ]
    return [
        ("h2", "Distance to the hardware limit"),
        ("table", ["", ""], rows),
        (
            "note",
            "Both ceilings from the model's architecture and the measured token counts (reports/flops.py). "
            "Compute: every FLOP at the datasheet peak (FP8 for an FP8 variant's linear layers only). "
            "Bandwidth: every decode step reads the weights once and each running request's KV cache, at the "
            "batch the server ran. Near the bandwidth ceiling a larger batch (a looser SLO), smaller weights or an "
            "FP8 KV cache buy rate; near the compute one (long prompts, short answers) FP8 matmuls do.",
        ),
    ]


def step_blocks(cap: dict) -> list[tuple]:
    steps = cap["per_step"]
    # the NVML columns only where an exporter was read (a GPU run)
    gpu = any("gpu_memory_used_peak_bytes" in (s.get("server") or {}) for s in steps)
    goodput = any(s.get("goodput_rps") is not None for s in steps)  # runs since the bounds were generalized
    histogram = any((s.get("server") or {}).get("server_e2e_p50_ms") is not None for s in steps)  # vLLM's /metrics
    # each bound the table's own columns do not show, at its own percentile
    extra = [b for b in Slo.from_record(cap["slo"]).latency_bounds() if b.key not in ALWAYS_SHOWN] if goodput else []
    rows = []
    for s in steps:
        srv = s.get("server") or {}
        row = [
            s["index"],
            s["phase"],
            fmt(s["offered_rps"], 2),
            fmt(s["achieved_rps"], 2),
            fmt(s["p50_ms"]),
            fmt(s["p95_ms"]),
            fmt(s["p99_ms"]),
            fmt(s["ttft_p95_ms"]),
            *[fmt((s.get("at_bounds") or {}).get(b.key), 1) for b in extra],
            *([fmt(s.get("goodput_rps"), 2)] if goodput else []),
            pct(s["error_rate"], 1),
            pct(srv.get("kv_cache_usage_peak")),
            fmt(srv.get("num_requests_waiting_peak")),
            pct(srv.get("prefix_cache_hit_rate")),
            server_quantile_text(srv.get("server_e2e_p50_ms"), srv.get("server_e2e_p50_bucket_ms")),
        ]
        if gpu:
            row += [
                gib_of(srv.get("gpu_memory_used_peak_bytes"))
                + " / "
                + gib_of(srv.get("server_process_memory_peak_bytes")),
                pct(srv.get("gpu_utilization_mean")),
                fmt(srv.get("gpu_power_mean_watts")),
            ]
        rows.append(row + [fmt(s.get("measured_s")), verdict_text(s), s["reason"]])
    header = [
        "#",
        "phase",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "TTFT p95",
        *[f"{b.name} ms" for b in extra],
        *(["goodput/s"] if goodput else []),
        "errors",
        "KV peak",
        "queue peak",
        "prefix cache hits",
        "server p50 ms (bucket]",
    ]
    if gpu:
        header += ["GPU memory peak (device / server)", "GPU busy (mean)", "GPU power mean W"]
    header += ["window s", "verdict", "reason"]
    note = (
        "Client latencies are exact percentiles of every request's time from its scheduled send."
        + (
            " The server p50 comes from vLLM's e2e latency histogram: interpolated inside the bucket that holds "
            "it, and the bucket's bounds are all the histogram knows (vLLM's first bucket ends at 300 ms)."
            if histogram
            else ""
        )
        + (" Goodput: requests per second that met every latency bound of the SLO." if goodput else "")
    )
    return [("h2", "Steps"), ("table", header, rows), ("note", note)]


def server_quantile_text(value_ms: float | None, bucket_ms: list | None) -> str:
    """'150 (0–300]': the interpolated figure and the histogram bucket (Prometheus' le: upper bound
    included) it lies in."""
    if value_ms is None:
        return "–"
    if not bucket_ms:
        return fmt(value_ms)
    low, high = bucket_ms
    return f"{fmt(value_ms)} ({fmt(low)}–{fmt(high) if high is not None else '∞'}]"


def gib_of(value_bytes: float | None) -> str:
    return gib(value_bytes / 2**30 if value_bytes is not None else None)


def answers_blocks(run_dir: Path) -> list[tuple]:
    """The quality pass, where the run had one (`llmcap plan`, `llmcap accuracy`)."""
    found = read_accuracy(run_dir)
    if found is None:
        return []
    _, q = found
    kept = " The answers' text is kept in accuracy/answers.jsonl."
    references = q.get("references", "dataset")
    if references is None or q["interval"] is None:
        failed = f" ({q['errors']} requests failed: those prompts are left out)" if q["errors"] else ""
        text = (
            f"{q['n']} prompts of the dataset, each answered once at temperature 0 and kept, not scored: the "
            f"prompts carry no reference answers, so the other variants' answers are scored against these{failed}."
        )
        return [("h2", "Answers"), ("p", text + kept)]
    against = "its reference answer" if references == "dataset" else "the baseline's answer to the same prompt"
    failed = f"; {q['errors']} requests failed and count as wrong" if q["errors"] else ""
    others = ", ".join(f"{name} {pct(value, 1)}" for name, value in list(q["metrics"].items())[1:])
    text = (
        f"{q['metric']} {pct(q['accuracy'], 1)} ({pct(q['interval']['low'], 1)}–"
        f"{pct(q['interval']['high'], 1)}, {interval_label(q['interval'])}) over {q['n']} prompts of the dataset, "
        f"each answered once at temperature 0 and scored against {against}"
        + (f"; {others}" if others else "")
        + failed
        + "."
    )
    return [("h2", "Answers"), ("p", text + kept)]


def plan_links(run_dir: Path) -> list[tuple]:
    """Back to the plan this run is part of: its index and comparison (written when the plan ends)."""
    plan_dir = plan_dir_of(run_dir)
    if plan_dir is None:
        return []
    up = os.path.relpath(plan_dir, run_dir.resolve())
    index, comparison = Link("index", f"{up}/index"), Link("comparison", f"{up}/comparison")
    return [("p", ["Part of a plan: its ", index, " and its ", comparison, " of every variant."])]


def write_report(run_dir: str | Path, prices_path: str | Path | None = None) -> dict:
    run_dir = Path(run_dir)
    cap = write_capacity(run_dir, prices_path)
    label = cap.get("variant") or cap["name"]
    images = [
        (plots.latency_vs_rate({label: cap}, run_dir / "latency_vs_rate.png"), "latency vs offered rate"),
        (plots.achieved_vs_offered({label: cap}, run_dir / "achieved_vs_offered.png"), "achieved vs offered"),
    ]
    fleet_png = plots.replicas_over_trace({label: cap.get("fleet") or {}}, run_dir / "replicas_over_trace.png")
    if fleet_png:
        images.append((fleet_png, "replicas over the traffic trace"))
    server_png = plots.server_over_time(run_dir, cap, run_dir / "server_over_time.png")
    if server_png:
        images.append((server_png, "server and GPU over time"))
    title = f"llmcap capacity report: {cap['name']}" + (f" ({cap['variant']})" if cap.get("variant") else "")
    blocks: list[tuple] = [
        ("h1", title),
        ("p", f"Model {model_text(cap.get('model'))}, served by {cap.get('engine') or '–'}. {arrivals_text(cap)}"),
    ]
    if cap.get("mode") == "concurrency":
        blocks += notice_blocks(cap) + closed_loop_blocks(cap) + step_blocks(cap)
    else:
        blocks += headline_blocks(cap) + answers_blocks(run_dir) + session_blocks(cap)
        blocks += [("h2", "Cost")] + cost_blocks(cap)
        blocks += fleet_blocks(cap) + hosted_blocks(cap) + limit_blocks(cap) + step_blocks(cap)
    blocks += [("h2", "Plots")] + [("img", str(path), alt) for path, alt in images]
    blocks += plan_links(run_dir)
    write(blocks, run_dir, "report", title)
    return cap
