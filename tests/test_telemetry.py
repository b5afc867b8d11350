"""Server summaries from scraped telemetry: pure functions over numbers."""

import json
import math

import pytest

from serving.telemetry import histogram_quantile, quantile_bucket, server_summary


def test_histogram_quantile_like_promql():
    buckets = {0.1: 10.0, 0.3: 60.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.2 * (50 - 10) / 50)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.3 + 0.7 * (95 - 60) / 40)
    assert quantile_bucket(0.5, buckets) == (0.1, 0.3)
    assert math.isnan(histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}))


def write_scrapes(path, rows):
    path.write_text("".join(json.dumps({"t": t, "m": m}) + "\n" for t, m in rows))


def test_server_summary_over_a_step(tmp_path):
    def hist(counts):
        return [
            ["vllm:e2e_request_latency_seconds_bucket", {"le": le, "model_name": "m"}, c]
            for le, c in zip(["0.1", "0.3", "1.0", "+Inf"], counts)
        ]

    rows = []
    for t, (kv, waiting, preempt, counts) in enumerate(
        [
            (0.10, 0, 0, [0, 0, 0, 0]),
            (0.40, 3, 1, [5, 20, 20, 20]),
            (0.70, 9, 2, [10, 60, 100, 100]),
            (0.20, 0, 2, [10, 60, 100, 100]),
        ]
    ):
        rows.append(
            (
                1000.0 + t,
                [
                    ["vllm:kv_cache_usage_perc", {"model_name": "m"}, kv],
                    ["vllm:num_requests_waiting", {"model_name": "m"}, waiting],
                    ["vllm:num_requests_running", {"model_name": "m"}, 4],
                    ["vllm:num_preemptions_total", {"model_name": "m"}, preempt],
                    *hist(counts),
                ],
            )
        )
    (tmp_path / "telemetry").mkdir()
    write_scrapes(tmp_path / "telemetry" / "vllm.jsonl", rows)
    gib = 2**30
    write_scrapes(
        tmp_path / "telemetry" / "gpu.jsonl",
        [
            (
                1000.0 + t,
                [
                    ["llmcap_gpu_memory_used_bytes", {"gpu": "0"}, used * gib],
                    ["llmcap_gpu_utilization_ratio", {"gpu": "0"}, util],
                    ["llmcap_gpu_power_watts", {"gpu": "0"}, 300.0 + 100 * t],
                    ["llmcap_gpu_process_memory_used_bytes", {"gpu": "0", "pid": "77"}, 7 * gib],
                    ["llmcap_gpu_process_memory_used_bytes", {"gpu": "0", "pid": "78"}, 1 * gib],
                    ["llmcap_gpu_process_memory_used_bytes", {"gpu": "0", "pid": "99"}, 5 * gib],
                ],
            )
            for t, (used, util) in enumerate([(70, 0.1), (72, 0.8), (74, 0.9), (71, 0.2)])
        ],
    )
    s = server_summary(tmp_path / "telemetry", 1000.5, 1002.5, server_pids={77, 78})
    assert s["kv_cache_usage_peak"] == 0.70 and s["num_requests_waiting_peak"] == 9
    assert s["preemptions"] == 2 - 0  # counter at 1000.0 (last before start) to 1002.0
    # histogram delta 1000.0 -> 1002.0: 10 in (0, 0.1], 50 in (0.1, 0.3], 40 in (0.3, 1.0]
    assert s["server_e2e_p50_ms"] == pytest.approx((0.1 + 0.2 * 40 / 50) * 1000)
    assert s["server_e2e_p50_bucket_ms"] == [100.0, 300.0]
    assert s["gpu_memory_used_peak_bytes"] == 74 * gib
    assert s["gpu_utilization_mean"] == pytest.approx(0.85) and s["gpu_power_mean_watts"] == pytest.approx(450)
    assert s["server_process_memory_peak_bytes"] == 8 * gib  # pids 77 and 78, not 99
