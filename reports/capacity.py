"""A run directory's capacity numbers (capacity.json): what a planner takes to the budget meeting.

Everything here is computed from result.json (the steps and their server
summaries), server/config.json (what vLLM ran) and the profile's cost section;
no rendering. One number, one place: every figure in the Markdown, HTML and
comparison reports is read from the dict this module returns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import yaml

from llmcap.errors import BadInput
from llmcap.profile import CostSettings, SearchParams, TrafficSettings
from llmcap.rundir import (
    CAPACITY_FILE,
    LATENCY_KEYS,
    RESULT_FILE,
    read_result,
    read_samples,
    read_server_config,
    step_at_max,
    write_json,
)
from reports.cost import hosted_usd_per_million_requests, usd_per_million_requests, usd_per_million_tokens
from reports.fleet import fleet_plan, read_trace
from reports.flops import HARDWARE, architecture_of, bandwidth_limit, compute_limit, kv_bytes_per_token, precision_of

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PRICES = REPO / "profiles" / "hosted_prices.yaml"
DEFAULT_COST = dataclasses.asdict(CostSettings())  # a run without a profile: the profile's defaults
DEFAULT_TRAFFIC = dataclasses.asdict(TrafficSettings())
GIB = 2**30


def load_hosted_prices(path: str | Path | None = None) -> dict:
    path = Path(path) if path else DEFAULT_PRICES
    data = yaml.safe_load(path.read_text())
    return {"as_of": str(data["as_of"]), "source": data.get("source", ""), "prices": data["prices"]}


def _search_method(result: dict) -> str:
    return (result.get("search") or {}).get("method", SearchParams().method)  # older results: the default


def _first_failing_rps(result: dict) -> float | None:
    """The search's lowest rate that did not pass; a partial step search, which has no search
    outcome, reads it off the steps it judged (failed or marginal: as the search counts them). An
    estimator's chunks are not verdicts."""
    if result.get("first_failing_rps") is not None or not result.get("partial") or _search_method(result) == "estimate":
        return result.get("first_failing_rps")
    judged = [s["offered_rps"] for s in result["steps"] if s.get("decision") in ("fail", "marginal")]
    return min(judged, default=None)


def _peak_over_steps(steps: list[dict], key: str) -> float | None:
    values = [s.get("server", {}).get(key) for s in steps]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def engine_text(server: dict) -> str | None:
    """Which engine served, with its version where it is known ("vllm 0.32.0", "transformers 5.17.0")."""
    engine = server.get("engine")
    if not engine:
        return None
    version = server.get(f"{engine}_version")
    return f"{engine} {version}" if version else engine


def stand_in(server: dict) -> list[str]:
    """What makes a run a stand-in for the real thing, in words a report shows on its face."""
    out = []
    if server.get("random_weights"):
        out.append("random weights (a model built by llmcap to exercise the machinery): not a trained model")
    if server.get("device") == "cpu":
        out.append("served on a CPU: says nothing about a GPU's capacity")
    engine = server.get("engine")
    if engine and engine not in ("vllm", "external"):
        out.append(f"served by {engine}, not vLLM: not comparable with vLLM figures")
    return out


def stand_in_banner(reasons: list[str]) -> str | None:
    """The line every report of a stand-in run opens with."""
    if not reasons:
        return None
    return "STAND-IN: these numbers say nothing about a real model's capacity or cost: " + "; ".join(reasons) + "."


def by_turn(run_dir: Path, start_s: float, end_s: float) -> list[dict]:
    """Latency and prompt length of each turn of the sessions due in [start_s, end_s): how the growing
    conversation (and the prefix cache's share of it) shows in latency."""
    samples, _ = read_samples(run_dir)
    w = samples[(samples["scheduled_s"] >= start_s) & (samples["scheduled_s"] < end_s)]
    rows = []
    for turn in np.unique(w["turn"]):
        t = w[(w["turn"] == turn)]
        ok = t[t["error"] == 0]
        e2e = (ok["end_s"] - ok["scheduled_s"]) * 1000
        ttft = (ok["first_token_s"] - ok["scheduled_s"]) * 1000
        tokens = ok["prompt_tokens"][ok["prompt_tokens"] >= 0]
        rows.append(
            {
                "turn": int(turn) + 1,
                "requests": int(len(t)),
                "errors": int(len(t) - len(ok)),
                "mean_prompt_tokens": float(tokens.mean()) if len(tokens) else None,
                "p50_ms": float(np.percentile(e2e, 50)) if len(e2e) else None,
                "p95_ms": float(np.percentile(e2e, 95)) if len(e2e) else None,
                "ttft_p50_ms": float(np.percentile(ttft, 50)) if len(ttft) else None,
            }
        )
    return rows


def capacity(run_dir: str | Path, prices_path: str | Path | None = None) -> dict:
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    if result is None:
        raise BadInput(f"{run_dir}: not a run directory (no {RESULT_FILE})")
    server = read_server_config(run_dir) or {}
    cost_cfg = {**DEFAULT_COST, **(result.get("cost") or {})}
    at = step_at_max(result["steps"], result.get("max_sustained_rps"))
    rps = result.get("max_sustained_rps")
    steps = result["steps"]
    gpus = cost_cfg["gpus_per_replica"]

    out: dict = {
        "name": result["name"],
        "stand_in": stand_in(server),
        "engine": engine_text(server),
        "variant": server.get("variant"),
        "model": server.get("model") or result.get("model"),
        "partial": result.get("partial", False),
        "mode": result.get("mode"),
        "search_method": _search_method(result),
        "arrival": result.get("arrival"),
        "arrival_trace": result.get("arrival_trace"),
        "slo": result["slo"],
        "max_sustained_rps": rps,
        "max_sustained_rps_interval": result.get("max_sustained_rps_interval"),
        "max_sustained_rps_fit": result.get("max_sustained_rps_fit"),
        "first_failing_rps": _first_failing_rps(result),
        "generator_bottleneck": result.get("generator_bottleneck"),
        "steps": len(steps),
        "gpu": cost_cfg["gpu"],
        "gpus_per_replica": gpus,
        "usd_per_gpu_hour": cost_cfg["usd_per_gpu_hour"],
    }
    if at:
        out["latency_at_max"] = {k: at.get(k) for k in (*LATENCY_KEYS, "mean_ms")}
        # measured at the interval's low end (the confirmed rate), which the answer may lie above
        out["latency_measured_at_rps"] = at.get("offered_rps")
        out["achieved_rps_at_max"] = at.get("achieved_rps")
        out["error_rate_at_max"] = at.get("error_rate")
        out["at_bounds_at_max"] = at.get("at_bounds")  # each SLO bound's own percentile
        out["goodput_rps_at_max"] = at.get("goodput_rps")
        out["slo_attainment_at_max"] = at.get("slo_attainment")
        out["mean_prompt_tokens"] = at.get("mean_prompt_tokens")
        out["mean_completion_tokens"] = at.get("mean_completion_tokens")
        out["server_at_max"] = at.get("server", {})
    else:
        with_tokens = [s for s in steps if s.get("mean_prompt_tokens")]
        if with_tokens:
            out["mean_prompt_tokens"] = with_tokens[-1]["mean_prompt_tokens"]
            out["mean_completion_tokens"] = with_tokens[-1]["mean_completion_tokens"]
    if rps:
        out["requests_per_day_per_gpu"] = rps * 86400 / gpus

    # memory: name each figure; none of them alone is "the GPU memory"
    arch = architecture_of(out["model"] or "")
    variant_args = {"quantization": server.get("quantization")}
    precision = precision_of(variant_args)
    memory = {
        "weights_gib_logged": server.get("model_weights_gib_logged"),
        "weights_gib_checkpoint": _gib(server.get("model_weights_bytes_checkpoint")),
        "weights_gib_computed": arch.weight_bytes(weight_bits(precision, server.get("dtype"))) / GIB if arch else None,
        "kv_cache_dtype": server.get("kv_cache_dtype"),
        "kv_cache_size_tokens": _kv_tokens(server.get("cache_config") or {}),
        "kv_cache_usage_peak": _peak_over_steps(steps, "kv_cache_usage_peak"),
        # what the sustained rate needs: the overall peak is an overload step's
        "kv_cache_usage_at_max": ((at or {}).get("server") or {}).get("kv_cache_usage_peak"),
        "gpu_memory_used_peak_gib": _gib(_peak_over_steps(steps, "gpu_memory_used_peak_bytes")),
        "server_process_memory_peak_gib": _gib(_peak_over_steps(steps, "server_process_memory_peak_bytes")),
    }
    out["memory"] = memory
    out["parameters"] = arch.total_params if arch else None

    if rps:
        tokens = (out.get("mean_prompt_tokens") or 0) + (out.get("mean_completion_tokens") or 0)
        out["cost"] = [
            {
                "utilization": u,
                "usd_per_million_requests": usd_per_million_requests(rps, cost_cfg["usd_per_gpu_hour"], gpus, u),
                "usd_per_million_tokens": usd_per_million_tokens(rps, tokens, cost_cfg["usd_per_gpu_hour"], gpus, u)
                if tokens
                else None,
            }
            for u in cost_cfg["utilizations"]
        ]
    # a stand-in's cost next to a real API's price would read as a saving nobody can have
    if out.get("mean_prompt_tokens") is not None and not out["stand_in"]:
        prices = load_hosted_prices(prices_path or cost_cfg.get("hosted_prices"))
        out["hosted"] = {
            "as_of": prices["as_of"],
            "rows": [
                {
                    "name": p["name"],
                    "input_usd_per_mtok": p["input_usd_per_mtok"],
                    "output_usd_per_mtok": p["output_usd_per_mtok"],
                    "usd_per_million_requests": hosted_usd_per_million_requests(
                        out["mean_prompt_tokens"],
                        out["mean_completion_tokens"] or 0,
                        p["input_usd_per_mtok"],
                        p["output_usd_per_mtok"],
                    ),
                }
                for p in prices["prices"]
            ],
        }
    traffic = {**DEFAULT_TRAFFIC, **(result.get("traffic") or {})}
    if rps and (traffic.get("peak_rps") is not None or traffic.get("trace")):
        interval = result.get("max_sustained_rps_interval") or {}
        out["fleet"] = fleet_plan(
            rps,
            gpus,
            cost_cfg["usd_per_gpu_hour"],
            peak_rps=traffic.get("peak_rps"),
            average_rps=traffic.get("average_rps"),
            per_minute=read_trace(traffic["trace"]) if traffic.get("trace") else None,
            target_utilization=traffic["target_utilization"],
            spare_replicas=traffic["spare_replicas"],
            max_sustained_rps_low=interval.get("low") if interval.get("low") != rps else None,
        )
        out["fleet"]["trace_file"] = traffic.get("trace")
    sessions = result.get("sessions") or {}
    if sessions.get("turns", 1) > 1 and steps:
        step = at or steps[-1]
        out["sessions"] = {
            **sessions,
            "step": step["index"],
            "by_turn": by_turn(run_dir, step["start"], step["end"]),
            "prefix_cache_hit_rate": (step.get("server") or {}).get("prefix_cache_hit_rate"),
        }
    # a stand-in's distance to a GPU's ceiling would read as a real model's efficiency
    if arch and out.get("mean_prompt_tokens") is not None and not out["stand_in"]:
        out["hardware_limit"] = hardware_limit(out, arch, cost_cfg["gpu"], precision, memory, server)
    out["per_step"] = [
        {
            k: s.get(k)
            for k in (
                "index",
                "phase",
                "concurrency",
                "offered_rps",
                "achieved_rps",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "ttft_p95_ms",
                "itl_p50_ms",
                "itl_p95_ms",
                "at_bounds",
                "goodput_rps",
                "mean_completion_tokens",
                "error_rate",
                "passed",
                "decision",
                "measured_s",
                "reason",
                "start",
                "end",
            )
        }
        | {"server": s.get("server", {})}
        for s in steps
    ]
    return out


def hardware_limit(out: dict, arch, gpu: str, precision: str, memory: dict, server: dict) -> dict:
    """Both ceilings at the measured token counts, and how much of each the sustained rate uses.
    The batch is the server's mean of running requests over the confirmation step, else Little's
    law (achieved rate x mean latency, an upper bound: it counts time spent queued)."""
    hw = HARDWARE.get(gpu)
    if hw is None or hw.bf16_tflops is None:
        why = "not in the hardware table (reports/flops.py)" if hw is None else "no datasheet peak to divide by"
        return {"gpu": gpu, "no_peak": why}
    gpus, rps = out["gpus_per_replica"], out.get("max_sustained_rps")
    p, c = out["mean_prompt_tokens"], out.get("mean_completion_tokens") or 0
    limit: dict = {"gpu": gpu, **(compute_limit(arch, hw, precision, gpus, p, c) or {})}
    limit["mfu"] = rps / limit["compute_ceiling_rps"] if rps else None
    vllm_flops = (out.get("server_at_max") or {}).get("vllm_flops_per_gpu_per_s")
    if vllm_flops:
        limit["vllm_mfu"] = vllm_flops / (limit["peak_tflops"] / gpus * 1e12)
    at_max = out.get("server_at_max") or {}
    batch, batch_from = at_max.get("num_requests_running_mean"), "the server's running requests, mean"
    if batch is None and out.get("achieved_rps_at_max") and (out.get("latency_at_max") or {}).get("mean_ms"):
        batch = out["achieved_rps_at_max"] * out["latency_at_max"]["mean_ms"] / 1000.0
        batch_from = "Little's law: achieved rate x mean latency"
    weights = memory.get("weights_gib_computed")
    if batch and weights:
        kv_bits = (
            8 if "fp8" in str(memory.get("kv_cache_dtype") or "").lower() else weight_bits("bf16", server.get("dtype"))
        )
        bw = bandwidth_limit(arch, hw, gpus, weights * GIB, kv_bits, p, c, batch)
        if bw:
            limit.update(bw, batch_from=batch_from, kv_bytes_per_token=kv_bytes_per_token(arch, kv_bits))
            limit["mbu"] = rps / bw["bandwidth_ceiling_rps"] if rps else None
    return limit


def weight_bits(precision: str, dtype: str | None) -> int:
    """Bits per weight as served: FP8 quantization, FP32 weights, or 16-bit (bf16/fp16/auto)."""
    if precision == "fp8":
        return 8
    return 32 if (dtype or "").lower() in ("float32", "float") else 16


def _kv_tokens(cache: dict) -> int | None:
    """KV-cache capacity in tokens from vllm:cache_config_info's labels."""
    for key in ("kv_cache_size_tokens", "num_gpu_blocks", "num_cpu_blocks"):
        value = cache.get(key)
        if value not in (None, "", "None"):
            try:
                n = int(float(value))
            except ValueError:
                continue
            return n if key == "kv_cache_size_tokens" else n * int(float(cache.get("block_size") or 16))
    return None


def _gib(value: float | None) -> float | None:
    return value / GIB if value is not None else None


def write_capacity(run_dir: str | Path, prices_path: str | Path | None = None) -> dict:
    data = capacity(run_dir, prices_path)
    write_json(Path(run_dir) / CAPACITY_FILE, data)
    return data
