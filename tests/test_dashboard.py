"""Every metric the Grafana dashboard queries exists in what the exporter or vLLM exposes."""

import importlib.util
import json
import re
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.exporter import LoadView
from serving.gpu_exporter import GpuMetrics
from tests.conftest import REPO
from tests.test_gpu_exporter import FakeNvml

DASHBOARD = REPO / "dashboards" / "llmcap-vllm.json"


def queried_metrics() -> set[str]:
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"(?<![\w$])(vllm:[a-z0-9_:]+|llmcap_[a-z0-9_]+)", target["expr"]))
    return names


def exposed(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_gpu_panels_use_exporter_metrics():
    metrics = GpuMetrics(FakeNvml())
    metrics.sample()
    have = exposed(generate_latest(metrics.registry).decode())
    gpu = {m for m in queried_metrics() if m.startswith("llmcap_gpu_")}
    assert gpu and gpu <= have, gpu - have


def test_llmcap_panels_use_what_a_run_serves(tmp_path):
    """The gauges of a search's state (tests/test_exporter.py checks their values), once it has
    judged a step, is offering a rate and has an answer."""
    from tests.test_exporter import searched_state

    state = searched_state(tmp_path)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoadView(state))
    have = exposed(generate_latest(registry).decode())
    load = {m for m in queried_metrics() if m.startswith("llmcap_") and not m.startswith("llmcap_gpu_")}
    assert load and load <= have, load - have


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


def generator():
    spec = importlib.util.spec_from_file_location("make_dashboard", REPO / "dashboards" / "make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dashboard_is_its_generators_output():
    assert DASHBOARD.read_text() == generator().text(), "run .venv/bin/python dashboards/make_dashboard.py"


def test_every_series_is_named_and_kept_apart_by_server():
    """Two vLLM servers scraped by one Prometheus stay two lines, named by instance and model; no
    legend is raw PromQL; rate windows follow the scrape interval; GPUs follow their own variable."""
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance", "model_name", "gpu_instance", "llmcap_instance"} <= variables
    targets = [t for panel in board["panels"] for t in panel["targets"]]
    for t in targets:
        expr, legend = t["expr"], t["legendFormat"]
        assert legend != "__auto" and "{{instance}}" in legend, t
        assert "[1m]" not in expr and ("rate(" not in expr or "[$__rate_interval]" in expr), t
        if "vllm:" in expr:
            assert '$instance"' in expr and '$model_name"' in expr and "by (instance, model_name" in expr, t
        elif "llmcap_gpu_" not in expr:
            assert '$llmcap_instance"' in expr and "{{run}}" in legend, t
        else:
            assert '$gpu_instance"' in expr, t
    units = [p["fieldConfig"]["defaults"]["unit"] for p in board["panels"]]
    assert "hertz" in units and "celsius" in units  # clock and temperature no longer share an axis
    assert len(board["panels"]) == 16 and len(targets) == 31
