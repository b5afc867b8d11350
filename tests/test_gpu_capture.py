"""The GPU exporter's output as a real H200 gave it (tests/fixtures): the names and labels the fake-NVML
tests assume, and the per-step GPU summary computed from it."""

import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.gpu_exporter import GpuMetrics
from serving.scraper import parse
from serving.telemetry import server_summary
from tests.test_gpu_exporter import FakeNvml

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = [FIXTURES / "gpu-exporter-h200-1.prom", FIXTURES / "gpu-exporter-h200-2.prom"]
SERVER_PID = 1745  # transformers serve on the card


def families(text: str) -> dict[str, set[tuple[str, ...]]]:
    """metric family -> the label names its samples carry."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(family.name, set()).add(tuple(sorted(sample.labels)))
    return out


def test_the_card_and_the_fake_nvml_give_the_same_metrics():
    fake = GpuMetrics(FakeNvml())
    fake.sample()
    from_fake = families(generate_latest(fake.registry).decode())
    from_card = families(CAPTURES[1].read_text())
    assert from_card == from_fake


def test_the_card_s_values_are_physical():
    rows = {(n, labels.get("reason"), labels.get("pid")): v for n, labels, v in parse(CAPTURES[1].read_text())}
    total = rows[("llmcap_gpu_memory_total_bytes", None, None)]
    used = rows[("llmcap_gpu_memory_used_bytes", None, None)]
    process = rows[("llmcap_gpu_process_memory_used_bytes", None, str(SERVER_PID))]
    assert 140e9 < total < 151e9  # an H200's 141 GB (143,771 MiB as nvidia-smi shows it)
    assert process <= used <= total
    assert 0 <= rows[("llmcap_gpu_utilization_ratio", None, None)] <= 1
    assert 50 < rows[("llmcap_gpu_power_watts", None, None)] <= rows[("llmcap_gpu_power_limit_watts", None, None)]
    assert rows[("llmcap_gpu_sm_clock_hz", None, None)] == pytest.approx(1.98e9)


def test_a_step_s_gpu_summary_from_the_card(tmp_path):
    scrapes = [{"t": 100.0 + i, "m": parse(path.read_text())} for i, path in enumerate(CAPTURES)]
    (tmp_path / "gpu.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scrapes))
    summary = server_summary(tmp_path, 99.0, 102.0, server_pids={SERVER_PID, 99999})
    assert summary["gpu_memory_used_peak_bytes"] == 133248712704.0
    assert summary["server_process_memory_peak_bytes"] == 132594532352.0  # the server's own process
    assert summary["gpu_utilization_mean"] == pytest.approx((0.19 + 0.05) / 2)
    assert summary["gpu_power_mean_watts"] == pytest.approx((143.399 + 134.842) / 2)
    # a window that holds only the first scrape sees only it
    assert server_summary(tmp_path, 99.5, 100.5, server_pids={SERVER_PID})["gpu_utilization_mean"] == 0.19
