"""Start and stop the server for one variant of a profile, and record what it really ran.

    with Server(profile, "bf16", run_dir) as server:
        ...  # server.url is healthy and serves the model

What each engine runs is `serving.engines` (the command is built from the profile alone,
so a dry run shows exactly what would start). The server runs in its own process group,
logs to `<run_dir>/server/vllm.log` (whatever the engine), and is stopped with SIGTERM,
then SIGKILL after a grace period, on exit, Ctrl-C or error. A server that dies while
starting is reported with the last lines of its log within a second of its death. An
external server (serving.url) is only checked, never started or stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llmcap.errors import ExitCode, LlmcapError
from llmcap.profile import Profile
from llmcap.rundir import server_log_path, write_server_config, write_server_pid
from serving.engines import (
    VARIANT_FLAGS,
    UnknownVariant,
    build_command,
    effective_args,
    is_ready,
    model_path,
    served_model_name,
    transformers_version,
    warm_up,
)

__all__ = ["Server", "ServerError", "UnsupportedVariant", "UnknownVariant", "VARIANT_FLAGS", "build_command"]


class ServerError(LlmcapError):
    """The server could not be started; the message's first line says why, the log's last lines follow."""


class UnsupportedVariant(ServerError):
    """This machine cannot serve the variant at all (known before anything starts)."""

    exit_code = ExitCode.BAD_INPUT


def lower_priority(nice: int) -> None:
    """Run in the server's child before exec. Its new session is a scheduler autogroup of its own
    (Linux, sched_autogroup_enabled), where a plain nice only ranks threads inside the group: set
    the group's nice too, so a load generator on the same cores gets the CPU when it needs it."""
    os.nice(nice)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    # the most telling lines: errors first, then the end
    errors = [line for line in text if re.search(r"Error|error:|Exception|Traceback|OOM|out of memory", line)]
    picked = (errors[-5:] + ["..."] if errors else []) + text[-lines:]
    return "\n".join(picked)


# an exception line as Python prints it: "RuntimeError: FP8 KV cache on CPU requires ..."
_EXCEPTION_LINE = re.compile(r"\b((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)): (.+)$")


def log_reason(path: Path) -> str | None:
    """The engine's own words for why it died: the last exception line in its log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = _EXCEPTION_LINE.search(line)
        if m:
            return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2).strip()}"
    return None


def variant_unsupported(profile: Profile, variant: str) -> str | None:
    """Why this machine cannot serve `variant` at all, or None. Only the CPU engine has rules
    that can be checked before start (a GPU's limits show when vLLM loads the model)."""
    if profile.serving.device != "cpu" or profile.serving.engine != "vllm":
        return None
    from serving.cpu_support import unsupported_reason

    return unsupported_reason(effective_args(profile, variant))


def checked_command(profile: Profile, variant: str, port: int | None) -> list[str] | None:
    """build_command, for a variant this machine can serve: an unknown variant or one it cannot
    run fails here, before anything starts (exit 2)."""
    command = build_command(profile, variant, port)
    reason = variant_unsupported(profile, variant)
    if reason:
        raise UnsupportedVariant(f"{variant} cannot run on this machine: {reason}")
    return command


def checkpoint_bytes(model: str) -> int | None:
    """The size of a local checkpoint's weight files (None for a hub id)."""
    files = [f for pattern in ("*.safetensors", "*.bin") for f in Path(model).glob(pattern)]
    return sum(f.stat().st_size for f in files) if files else None


def parse_metric_labels(text: str, name: str) -> dict | None:
    """The labels of the first sample called `name` (an info-style gauge such as vllm:cache_config_info)."""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return dict(sample.labels)
    except ValueError:
        pass
    return None


class Server:
    def __init__(
        self,
        profile: Profile,
        variant: str,
        run_dir: str | Path,
        *,
        port: int | None = None,
        startup_timeout_s: float | None = None,
        grace_s: float = 15.0,
    ):
        self.profile = profile
        self.variant = variant
        self.run_dir = Path(run_dir)
        self.external = profile.serving.engine == "external"
        self.port = port or profile.serving.port
        self.host = profile.serving.host
        own_url = profile.serving.variants[variant].url if variant in profile.serving.variants else None
        external_url = (own_url or profile.serving.url or "").rstrip("/")
        self.url = external_url if self.external else f"http://{self.host}:{self.port}"
        self.model_name = served_model_name(profile, variant)
        self.startup_timeout_s = startup_timeout_s or profile.serving.startup_timeout_s
        self.grace_s = grace_s
        self.command = build_command(profile, variant, self.port)
        self.proc: subprocess.Popen | None = None
        self.log_path = server_log_path(self.run_dir)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Server:
        if self.command is None:  # external: someone else runs it
            self.started_at = time.time()
            self._wait_ready()
            self.record_config()
            return self
        reason = variant_unsupported(self.profile, self.variant)
        if reason:
            raise UnsupportedVariant(f"{self.variant} cannot run on this machine: {reason}")
        if not port_is_free(self.host, self.port):
            raise ServerError(
                f"port {self.port} on {self.host} is already in use: stop what runs there or set serving.port"
            )
        exe = self.command[0]
        if not (os.path.isfile(exe) or shutil.which(exe)):
            raise ServerError(
                f"{exe}: not found (install the engine: scripts/install-cpu-engine.sh for CPU, "
                f"or `pip install {self.profile.serving.engine}` on a GPU host, or set serving.python)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: str(v) for k, v in self.profile.serving.env.items()}}
        log = open(self.log_path, "ab")
        self.started_at = time.time()
        nice = self.profile.serving.nice
        self.proc = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=(lambda: lower_priority(nice)) if nice else None,
        )
        log.close()
        write_server_pid(self.run_dir, self.proc.pid)
        try:
            self._wait_ready()
            self.record_config()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.time() + self.startup_timeout_s
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                reason = log_reason(self.log_path) or "no exception in its log"
                raise ServerError(
                    f"{self.profile.serving.engine} exited with code {self.proc.returncode} while starting: {reason} "
                    f"(log: {self.log_path})\n{tail(self.log_path)}"
                )
            try:
                if is_ready(self.profile, self.url, self.model_name):
                    warm_up(self.profile, self.url, self.model_name, max(deadline - time.time(), 1.0))
                    self.ready_s = time.time() - self.started_at
                    return
            except urllib.error.HTTPError as e:
                # up but broken: `transformers serve` answers 503 for good once its batching worker died
                # (FP8 weights without their kernels, on the GPU check); its log says why
                broken = log_reason(self.log_path) if e.code >= 500 and self.proc is not None else None
                if broken:
                    raise ServerError(
                        f"{self.profile.serving.engine} is up but failing (HTTP {e.code}): {broken} "
                        f"(log: {self.log_path})\n{tail(self.log_path)}"
                    ) from None
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        if self.proc is None:
            raise ServerError(f"{self.url}: no healthy server there within {self.startup_timeout_s:g} s (serving.url)")
        raise ServerError(
            f"{self.profile.serving.engine} not healthy within {self.startup_timeout_s:g} s "
            f"({self.log_path}):\n{tail(self.log_path)}"
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        # engine core processes live in the same group; make sure none outlives the server
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what ran -------------------------------------------------------------------------
    def record_config(self) -> dict:
        metrics = ""
        try:
            metrics = urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode()
        except OSError:
            pass
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        engine = self.profile.serving.engine
        version = re.search(r"vLLM API server version ([\w.+\-]+)", log) or re.search(r"version ([0-9][\w.+\-]*)", log)
        weights = re.search(r"Model loading took ([0-9.]+) GiB", log)
        cache = parse_metric_labels(metrics, "vllm:cache_config_info") or {}
        args = effective_args(self.profile, self.variant)
        model = model_path(self.profile, self.variant)
        config = {
            "variant": self.variant,
            "command": self.command,
            "url": self.url,
            "engine": engine,
            "model": model,
            "served_model_name": self.model_name,
            "vllm_version": version.group(1) if version and engine == "vllm" else None,
            "transformers_version": transformers_version(self.profile.serving.python)
            if engine == "transformers"
            else None,
            "dtype": args["dtype"] or "auto",
            "quantization": args["quantization"],
            "kv_cache_dtype": cache.get("cache_dtype") or args["kv_cache_dtype"] or "auto",
            "cache_config": cache,
            "model_weights_gib_logged": float(weights.group(1)) if weights else None,
            # what the weights take before the engine's own pools: `transformers serve` logs no
            # figure and its process holds a KV cache of most of the card (131 GB on an H200)
            "model_weights_bytes_checkpoint": checkpoint_bytes(model),
            "random_weights": (Path(model) / "llmcap_tiny_model.json").exists(),
            "device": self.profile.serving.device,
            "pid": self.proc.pid if self.proc else None,
            "ready_seconds": round(getattr(self, "ready_s", 0.0), 1),
        }
        write_server_config(self.run_dir, config)
        self.config = config
        return config
