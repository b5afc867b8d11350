"""The server's side of a step, from the scraped telemetry: pure functions over numbers.

Reads `telemetry/<target>.jsonl` (see serving/scraper.py). Gauges are summarised
by peak and mean over the step; counters and histograms by their change across
the step, and latency quantiles from the histogram's bucket deltas with the same
linear interpolation as PromQL's histogram_quantile.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import psutil

from llmcap.rundir import Scrape, load_scrapes


def _value(rows: list, name: str, match: dict | None = None) -> float | None:
    """Sum of all series of `name` whose labels include `match`."""
    total, found = 0.0, False
    for n, labels, v in rows:
        if n == name and (not match or all(labels.get(k) == str(x) for k, x in match.items())):
            total += v
            found = True
    return total if found else None


def gauge(scrapes: list[Scrape], name: str, start: float, end: float, match: dict | None = None) -> list[float]:
    return [v for t, rows in scrapes if start <= t <= end and (v := _value(rows, name, match)) is not None]


def _at(scrapes: list[Scrape], t: float) -> list | None:
    """The last scrape at or before t (else the first one after it)."""
    before = [rows for ts, rows in scrapes if ts <= t]
    if before:
        return before[-1]
    return scrapes[0][1] if scrapes else None


def counter_delta(scrapes: list[Scrape], name: str, start: float, end: float) -> float | None:
    a, b = _at(scrapes, start), _at(scrapes, end)
    if a is None or b is None:
        return None
    va, vb = _value(a, name), _value(b, name)
    if va is None or vb is None:
        return None
    return max(vb - va, 0.0)


def _buckets(rows: list, name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for n, labels, v in rows:
        if n == name + "_bucket":
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + v
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """PromQL's histogram_quantile over cumulative bucket counts {le: count}."""
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return math.nan
    total = buckets[les[-1]]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bucket: its bound is the best we know
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return les[-1]


def quantile_bucket(q: float, buckets: dict[float, float]) -> tuple[float, float]:
    """The bucket [lower, upper) that holds quantile q: the histogram cannot say more than that."""
    les = sorted(buckets)
    rank = q * buckets[les[-1]]
    prev = 0.0
    for le in les:
        if buckets[le] >= rank:
            return prev, le
        prev = le
    return prev, math.inf


def histogram_delta_quantiles(
    scrapes: list[Scrape], name: str, start: float, end: float, qs=(0.5, 0.95)
) -> dict[Any, Any] | None:
    a, b = _at(scrapes, start), _at(scrapes, end)
    if a is None or b is None:
        return None
    ba, bb = _buckets(a, name), _buckets(b, name)
    if not bb:
        return None
    delta = {le: bb[le] - ba.get(le, 0.0) for le in bb}
    out: dict[Any, Any] = {q: histogram_quantile(q, delta) for q in qs}
    if delta[max(delta)] > 0:
        out["p50_bucket"] = quantile_bucket(0.5, delta)
    return out


def _peak(values: list[float]) -> float | None:
    return max(values) if values else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or math.isnan(seconds) else seconds * 1000.0


def server_summary(telemetry_dir: str | Path, start: float, end: float, server_pids: set[int] | None = None) -> dict:
    """What the server and GPU did during [start, end]; keys are absent where nothing was scraped."""
    telemetry_dir = Path(telemetry_dir)
    out: dict = {}
    vllm = load_scrapes(telemetry_dir / "vllm.jsonl")
    if vllm:
        kv = gauge(vllm, "vllm:kv_cache_usage_perc", start, end)
        waiting = gauge(vllm, "vllm:num_requests_waiting", start, end)
        running = gauge(vllm, "vllm:num_requests_running", start, end)
        out.update(
            {
                "kv_cache_usage_peak": _peak(kv),
                "num_requests_waiting_peak": _peak(waiting),
                "num_requests_running_peak": _peak(running),
                "num_requests_running_mean": _mean(running),
                "preemptions": counter_delta(vllm, "vllm:num_preemptions_total", start, end),
            }
        )
        # both counters count tokens: the share of prompt tokens the prefix cache served
        queried = counter_delta(vllm, "vllm:prefix_cache_queries_total", start, end)
        hit = counter_delta(vllm, "vllm:prefix_cache_hits_total", start, end)
        if queried and hit is not None:
            out["prefix_cache_hit_rate"] = hit / queried
        ttft = histogram_delta_quantiles(vllm, "vllm:time_to_first_token_seconds", start, end)
        e2e = histogram_delta_quantiles(vllm, "vllm:e2e_request_latency_seconds", start, end)
        if ttft:
            out["server_ttft_p50_ms"], out["server_ttft_p95_ms"] = _ms(ttft[0.5]), _ms(ttft[0.95])
        if e2e:
            out["server_e2e_p50_ms"], out["server_e2e_p95_ms"] = _ms(e2e[0.5]), _ms(e2e[0.95])
            if "p50_bucket" in e2e:
                # vLLM's buckets are coarse (the first ends at 0.3 s): the p50 lies somewhere in here
                out["server_e2e_p50_bucket_ms"] = [_ms(b) if not math.isinf(b) else None for b in e2e["p50_bucket"]]
        flops = counter_delta(vllm, "vllm:estimated_flops_per_gpu_total", start, end)
        if flops is not None and end > start:
            out["vllm_flops_per_gpu_per_s"] = flops / (end - start)
    gpu = load_scrapes(telemetry_dir / "gpu.jsonl")
    if gpu:
        used = gauge(gpu, "llmcap_gpu_memory_used_bytes", start, end) or [
            v * 2**20 for v in gauge(gpu, "DCGM_FI_DEV_FB_USED", start, end)
        ]
        util = gauge(gpu, "llmcap_gpu_utilization_ratio", start, end) or [
            v / 100 for v in gauge(gpu, "DCGM_FI_DEV_GPU_UTIL", start, end)
        ]
        power = gauge(gpu, "llmcap_gpu_power_watts", start, end) or gauge(gpu, "DCGM_FI_DEV_POWER_USAGE", start, end)
        out.update(
            {
                "gpu_memory_used_peak_bytes": _peak(used),
                "gpu_memory_used_mean_bytes": _mean(used),
                "gpu_utilization_mean": _mean(util),
                "gpu_power_mean_watts": _mean(power),
            }
        )
        if server_pids:
            # vLLM's GPU memory belongs to its engine-core child, so sum over the server's process tree
            wanted = {str(p) for p in server_pids}
            proc = [
                sum(
                    v
                    for n, labels, v in rows
                    if n == "llmcap_gpu_process_memory_used_bytes" and labels.get("pid") in wanted
                )
                for t, rows in gpu
                if start <= t <= end
            ]
            out["server_process_memory_peak_bytes"] = _peak(proc)
            out["server_process_memory_mean_bytes"] = _mean(proc)
    return {k: v for k, v in out.items() if v is not None}


def process_tree(root_pid: int) -> set[int]:
    """root_pid and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(root_pid)
        return {root_pid} | {p.pid for p in root.children(recursive=True)}
    except psutil.Error:
        return set()
