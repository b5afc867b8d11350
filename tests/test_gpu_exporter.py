"""The NVML exporter with NVML replaced at the library boundary, and with NVML absent."""

import subprocess
import sys
import threading
import types
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.gpu_exporter import GpuMetrics, NvmlUnavailable, serve
from tests.conftest import free_port, wait_http

GIB = 2**30


class FakeNvml:
    """The pynvml functions the exporter calls, over values the test controls."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self):
        self.used = [10 * GIB, 1 * GIB]
        self.procs = [[(4242, 7 * GIB), (4243, 2 * GIB)], []]

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}"

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=self.used[h], total=80 * GIB)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.procs[h]]

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=87 if h == 0 else 0, memory=41)

    def nvmlDeviceGetPowerUsage(self, h):
        return 412_500

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        if h == 1:
            raise RuntimeError("Not Supported")  # a field the driver does not support is skipped
        return 0x4 | 0x1


def values(registry) -> dict:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def lab(gpu, **extra):
    return tuple(sorted({"gpu": str(gpu), "uuid": f"GPU-{gpu}", "name": "NVIDIA H100 80GB HBM3", **extra}.items()))


def test_values_in_exposition_out():
    fake = FakeNvml()
    m = GpuMetrics(fake)
    m.sample()
    v = values(m.registry)
    assert v[("llmcap_gpu_memory_used_bytes", lab(0))] == 10 * GIB
    assert v[("llmcap_gpu_memory_total_bytes", lab(1))] == 80 * GIB
    assert v[("llmcap_gpu_process_memory_used_bytes", lab(0, pid="4242"))] == 7 * GIB
    assert v[("llmcap_gpu_utilization_ratio", lab(0))] == 0.87
    assert v[("llmcap_gpu_memory_utilization_ratio", lab(0))] == 0.41
    assert v[("llmcap_gpu_power_watts", lab(0))] == 412.5
    assert v[("llmcap_gpu_power_limit_watts", lab(0))] == 700
    assert v[("llmcap_gpu_sm_clock_hz", lab(0))] == 1.98e9
    assert v[("llmcap_gpu_temperature_celsius", lab(1))] == 61
    assert v[("llmcap_gpu_throttle_active", lab(0, reason="sw_power_cap"))] == 1
    assert v[("llmcap_gpu_throttle_active", lab(0, reason="hw_slowdown"))] == 0
    assert not any(k[0] == "llmcap_gpu_throttle_active" and ("gpu", "1") in k[1] for k in v)
    # memory is freed and a process exits: the next sample follows
    fake.used[0] = 3 * GIB
    fake.procs[0] = [(4242, 1 * GIB)]
    m.sample()
    v = values(m.registry)
    assert v[("llmcap_gpu_memory_used_bytes", lab(0))] == 3 * GIB
    assert ("llmcap_gpu_process_memory_used_bytes", lab(0, pid="4243")) not in v


def test_serves_http_on_loopback():
    port = free_port()
    threading.Thread(target=serve, args=(port, "127.0.0.1", 0.2, FakeNvml()), daemon=True).start()
    wait_http(f"http://127.0.0.1:{port}/metrics")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    assert 'llmcap_gpu_memory_used_bytes{gpu="0"' in text


def test_nvml_absent_is_one_line_and_nonzero():
    class Broken:
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    with pytest.raises(NvmlUnavailable, match="NVML unavailable"):
        GpuMetrics(Broken())
    run = subprocess.run(
        [str(Path(sys.executable).with_name("llmcap")), "gpu-exporter", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if run.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "NVML unavailable" in run.stderr and "Traceback" not in run.stderr
