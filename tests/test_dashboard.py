"""Every metric the Grafana dashboard queries exists in what the exporter or vLLM exposes."""

import json
import re
import urllib.request

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.gpu_exporter import GpuMetrics
from tests.conftest import REPO
from tests.test_gpu_exporter import FakeNvml

DASHBOARD = REPO / "dashboards" / "llmcap-vllm.json"


def queried_metrics() -> set[str]:
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b(vllm:[a-z0-9_:]+|llmcap_gpu_[a-z0-9_]+)", target["expr"]))
    return names


def exposed(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_gpu_panels_use_exporter_metrics():
    metrics = GpuMetrics(FakeNvml())
    metrics.sample()
    have = exposed(generate_latest(metrics.registry).decode())
    gpu = {m for m in queried_metrics() if m.startswith("llmcap_gpu_")}
    assert gpu and gpu <= have, gpu - have


def test_vllm_panels_use_real_vllm_metrics(cpu_server):
    # a request first, so that every histogram and counter has a series
    body = json.dumps(
        {"model": cpu_server.model_name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            cpu_server.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        ),
        timeout=60,
    ).read()
    have = exposed(urllib.request.urlopen(cpu_server.url + "/metrics", timeout=10).read().decode())
    wanted = {m for m in queried_metrics() if m.startswith("vllm:")}
    assert wanted and wanted <= have, wanted - have
