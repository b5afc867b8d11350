"""Writes llmcap-vllm.json, the Grafana dashboard, from the panel list below (its one source).

    .venv/bin/python dashboards/make_dashboard.py

Every vLLM series is one server: selected by the `instance` and `model_name` variables and kept
apart by them (`sum by (instance, model_name)`), so a BF16 and an FP8 server scraped by one
Prometheus stay two lines; GPU series by `gpu_instance` and each GPU; llmcap's own figures
(`--prometheus-port`) by `llmcap_instance` and run. Rate windows are
`$__rate_interval`, which follows the scrape interval and the zoom, not a fixed minute that would
blur a 10-s step. One unit per panel. `tests/test_dashboard.py` checks the file is this output.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("llmcap-vllm.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVER = 'instance=~"$instance", model_name=~"$model_name"'
GPU = 'instance=~"$gpu_instance"'
LOAD = 'instance=~"$llmcap_instance"'
BY_SERVER = "instance, model_name"
SERVER_LEGEND = "{{instance}} {{model_name}}"
GPU_LEGEND = "{{instance}} GPU {{gpu}}"
LOAD_LEGEND = "{{instance}} {{run}}"


def rate(metric: str) -> str:
    return f"sum by ({BY_SERVER}) (rate({metric}{{{SERVER}}}[$__rate_interval]))"


def quantile(q: float, histogram: str) -> str:
    buckets = f"rate({histogram}_bucket{{{SERVER}}}[$__rate_interval])"
    return f"histogram_quantile({q}, sum by ({BY_SERVER}, le) ({buckets}))"


def server_gauge(metric: str, how: str = "sum") -> str:
    return f"{how} by ({BY_SERVER}) ({metric}{{{SERVER}}})"


def gpu(metric: str, extra: str = "") -> str:
    return f"{metric}{{{GPU}{extra}}}"


def load(metric: str, extra: str = "") -> str:
    """llmcap's own gauges (loadtest/exporter.py, --prometheus-port): exact figures, no rate()."""
    return f"{metric}{{{LOAD}{extra}}}"


def latency(metric: str, window: str) -> str:
    return load("llmcap_latency_seconds", f', metric="{metric}", quantile="0.95", window="{window}"')


# (title, unit, [(PromQL, legend)]): Grafana's unit ids (reqps, s, percentunit, bytes, watt, hertz, celsius)
PANELS = [
    (
        "Offered and achieved rate (llmcap)",
        "reqps",
        [
            (load("llmcap_offered_requests_per_second"), f"{LOAD_LEGEND} offered"),
            (load("llmcap_achieved_requests_per_second", ', window="live"'), f"{LOAD_LEGEND} achieved, last 5 s"),
            (load("llmcap_achieved_requests_per_second", ', window="step"'), f"{LOAD_LEGEND} achieved, last step"),
        ],
    ),
    (
        "p95 from the scheduled send against the SLO (llmcap, exact)",
        "s",
        [
            (latency("e2e", "live"), f"{LOAD_LEGEND} p95, last 5 s"),
            (latency("e2e", "step"), f"{LOAD_LEGEND} p95, last step"),
            (latency("ttft", "step"), f"{LOAD_LEGEND} TTFT p95, last step"),
            (load("llmcap_slo_limit_seconds"), f"{LOAD_LEGEND} SLO {{{{metric}}}} q{{{{quantile}}}}"),
        ],
    ),
    ("Requests completed / s", "reqps", [(rate("vllm:request_success_total"), SERVER_LEGEND)]),
    (
        "End-to-end latency (server)",
        "s",
        [(quantile(q, "vllm:e2e_request_latency_seconds"), f"{SERVER_LEGEND} p{q * 100:g}") for q in (0.5, 0.95, 0.99)],
    ),
    (
        "Time to first token (server)",
        "s",
        [(quantile(q, "vllm:time_to_first_token_seconds"), f"{SERVER_LEGEND} p{q * 100:g}") for q in (0.5, 0.95)],
    ),
    (
        "Inter-token latency (server)",
        "s",
        [(quantile(q, "vllm:inter_token_latency_seconds"), f"{SERVER_LEGEND} p{q * 100:g}") for q in (0.5, 0.95)],
    ),
    (
        "Requests running and waiting",
        "short",
        [
            (server_gauge("vllm:num_requests_running"), f"{SERVER_LEGEND} running"),
            (server_gauge("vllm:num_requests_waiting"), f"{SERVER_LEGEND} waiting"),
        ],
    ),
    ("KV cache in use", "percentunit", [(server_gauge("vllm:kv_cache_usage_perc", "max"), SERVER_LEGEND)]),
    (
        "Tokens / s",
        "short",
        [
            (rate("vllm:prompt_tokens_total"), f"{SERVER_LEGEND} prompt"),
            (rate("vllm:generation_tokens_total"), f"{SERVER_LEGEND} generated"),
        ],
    ),
    ("Preemptions / s", "short", [(rate("vllm:num_preemptions_total"), SERVER_LEGEND)]),
    (
        "GPU memory used",
        "bytes",
        [
            (gpu("llmcap_gpu_memory_used_bytes"), f"{GPU_LEGEND} used"),
            (gpu("llmcap_gpu_memory_total_bytes"), f"{GPU_LEGEND} total"),
            (
                f"sum by (instance, gpu, pid) ({gpu('llmcap_gpu_process_memory_used_bytes')})",
                f"{GPU_LEGEND} pid {{{{pid}}}}",
            ),
        ],
    ),
    (
        "GPU utilization",
        "percentunit",
        [
            (gpu("llmcap_gpu_utilization_ratio"), f"{GPU_LEGEND} kernels"),
            (gpu("llmcap_gpu_memory_utilization_ratio"), f"{GPU_LEGEND} memory"),
        ],
    ),
    (
        "GPU power",
        "watt",
        [
            (gpu("llmcap_gpu_power_watts"), f"{GPU_LEGEND} draw"),
            (gpu("llmcap_gpu_power_limit_watts"), f"{GPU_LEGEND} limit"),
        ],
    ),
    ("GPU SM clock", "hertz", [(gpu("llmcap_gpu_sm_clock_hz"), GPU_LEGEND)]),
    ("GPU temperature", "celsius", [(gpu("llmcap_gpu_temperature_celsius"), GPU_LEGEND)]),
    # a series only while a throttle reason is active: an empty panel is a GPU never throttled
    ("GPU throttling", "short", [(gpu("llmcap_gpu_throttle_active", "") + " == 1", f"{GPU_LEGEND} {{{{reason}}}}")]),
]


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on each time-range change: a server started since shows up
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard() -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "datasource": DATASOURCE,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + k), "expr": expr, "legendFormat": legend}
                    for k, (expr, legend) in enumerate(targets)
                ],
            }
        )
    templating = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        variable("instance", "vLLM server", "label_values(vllm:num_requests_running, instance)"),
        variable("model_name", "model", 'label_values(vllm:num_requests_running{instance=~"$instance"}, model_name)'),
        variable("gpu_instance", "GPU exporter", "label_values(llmcap_gpu_memory_used_bytes, instance)"),
        variable("llmcap_instance", "llmcap", "label_values(llmcap_offered_requests_per_second, instance)"),
    ]
    return {
        "title": "llmcap: vLLM load test",
        "uid": "llmcap-vllm",
        "schemaVersion": 39,
        "version": 3,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "tags": ["llmcap", "vllm"],
        "templating": {"list": templating},
        "panels": panels,
    }


def text() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(text())
    print(f"wrote {OUT} ({len(PANELS)} panels)")
