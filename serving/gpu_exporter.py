"""`llmcap gpu-exporter`: NVML readings served as Prometheus metrics.

    llmcap gpu-exporter --port 9400 [--bind 127.0.0.1] [--interval 1]

Per GPU (labels gpu, uuid, name): memory used/total, memory used per process (so a
vLLM server's own share is known), GPU and memory-controller utilization, power
draw and limit, SM clock, temperature and active throttle reasons. Reads NVML
through nvidia-ml-py (`pynvml`), passed in as a module so tests can replace it at
the library boundary. Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import importlib
import time

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from llmcap.errors import LlmcapError
from llmcap.log import get_logger

log = get_logger("llmcap.gpu-exporter")

THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
GPU_LABELS = ("gpu", "uuid", "name")


class NvmlUnavailable(LlmcapError):
    pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuMetrics:
    """The exporter's gauges, in their own registry, and one `sample()` that refreshes them all."""

    def __init__(self, nvml, registry: CollectorRegistry | None = None):
        self.nvml = nvml
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def g(name, doc, labels=GPU_LABELS):
            return Gauge(name, doc, labels, registry=r)

        self.memory_used = g("llmcap_gpu_memory_used_bytes", "Device memory in use (NVML)")
        self.memory_total = g("llmcap_gpu_memory_total_bytes", "Device memory in total")
        self.process_memory = g(
            "llmcap_gpu_process_memory_used_bytes", "Device memory used by a process", GPU_LABELS + ("pid",)
        )
        self.utilization = g("llmcap_gpu_utilization_ratio", "Fraction of the last sample period a kernel ran")
        self.memory_utilization = g(
            "llmcap_gpu_memory_utilization_ratio",
            "Fraction of the last sample period device memory was read or written",
        )
        self.power = g("llmcap_gpu_power_watts", "Power draw")
        self.power_limit = g("llmcap_gpu_power_limit_watts", "Enforced power limit")
        self.sm_clock = g("llmcap_gpu_sm_clock_hz", "SM clock")
        self.temperature = g("llmcap_gpu_temperature_celsius", "GPU temperature")
        self.throttle = g(
            "llmcap_gpu_throttle_active", "1 while a clock throttle reason is active", GPU_LABELS + ("reason",)
        )
        self.timestamp = Gauge("llmcap_gpu_sample_timestamp_seconds", "When NVML was last read", registry=r)
        try:
            nvml.nvmlInit()
            self.count = nvml.nvmlDeviceGetCount()
        except Exception as e:  # NVMLError, or a library that cannot be loaded
            raise NvmlUnavailable(
                f"NVML unavailable ({_text(e) or type(e).__name__}): no NVIDIA driver or GPU on this machine"
            ) from None
        self.devices = []
        for i in range(self.count):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            self.devices.append(
                (handle, (str(i), _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle))))
            )

    def _read(self, fn, *args):
        try:
            return fn(*args)
        except Exception:  # a field this GPU or driver does not support
            return None

    def sample(self) -> None:
        n = self.nvml
        self.process_memory.clear()
        for handle, labels in self.devices:
            mem = self._read(n.nvmlDeviceGetMemoryInfo, handle)
            if mem is not None:
                self.memory_used.labels(*labels).set(mem.used)
                self.memory_total.labels(*labels).set(mem.total)
            for proc in self._read(n.nvmlDeviceGetComputeRunningProcesses, handle) or []:
                used = proc.usedGpuMemory
                if used is not None:
                    self.process_memory.labels(*labels, str(proc.pid)).set(used)
            util = self._read(n.nvmlDeviceGetUtilizationRates, handle)
            if util is not None:
                self.utilization.labels(*labels).set(util.gpu / 100)
                self.memory_utilization.labels(*labels).set(util.memory / 100)
            power = self._read(n.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                self.power.labels(*labels).set(power / 1000)
            limit = self._read(n.nvmlDeviceGetEnforcedPowerLimit, handle)
            if limit is not None:
                self.power_limit.labels(*labels).set(limit / 1000)
            clock = self._read(n.nvmlDeviceGetClockInfo, handle, n.NVML_CLOCK_SM)
            if clock is not None:
                self.sm_clock.labels(*labels).set(clock * 1e6)
            temp = self._read(n.nvmlDeviceGetTemperature, handle, n.NVML_TEMPERATURE_GPU)
            if temp is not None:
                self.temperature.labels(*labels).set(temp)
            reasons = self._read(
                getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
                or n.nvmlDeviceGetCurrentClocksThrottleReasons,
                handle,
            )
            if reasons is not None:
                for bit, name in THROTTLE_REASONS.items():
                    self.throttle.labels(*labels, name).set(1 if reasons & bit else 0)
        self.timestamp.set(time.time())


def serve(port: int, bind: str = "127.0.0.1", interval_s: float = 1.0, nvml=None) -> None:
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as e:
            raise NvmlUnavailable(f"NVML unavailable (nvidia-ml-py not importable: {e})") from None
    metrics = GpuMetrics(nvml)
    metrics.sample()
    start_http_server(port, addr=bind, registry=metrics.registry)
    print(
        f"llmcap gpu-exporter: {metrics.count} GPU(s) on http://{bind}:{port}/metrics, every {interval_s:g} s",
        flush=True,
    )
    next_t = time.time()
    while True:
        next_t += interval_s
        time.sleep(max(0.0, next_t - time.time()))
        metrics.sample()


def cmd_gpu_exporter(args) -> int:
    if args.interval <= 0 or args.interval > 1:
        log.error("--interval must be in (0, 1] seconds")
        return 2
    try:
        serve(args.port, args.bind, args.interval)
    except NvmlUnavailable as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        log.error(f"cannot listen on {args.bind}:{args.port} ({e.strerror})")
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("gpu-exporter", help="serve NVML GPU metrics for Prometheus")
    p.add_argument("--port", type=int, default=9400, help="port of /metrics (default 9400, as the DCGM exporter)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between NVML reads (at most 1)")
    p.set_defaults(func=cmd_gpu_exporter)
