"""Shared fixtures: a stub server in its own process, and a way to run locust like a user does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest_plugins = ["tests.shard"]
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PY = sys.executable
LOCUST = str(Path(sys.executable).with_name("locust"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


class Stub:
    """Handle on a running stub server (tests/stub_server.py)."""

    def __init__(self, port: int, proc: subprocess.Popen):
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def _post(self, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}
        )
        return json.loads(urllib.request.urlopen(req, timeout=5).read())

    def configure(self, **changes) -> dict:
        return self._post("/stub/config", changes)

    def reset(self) -> None:
        self._post("/stub/reset")

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(self.url + "/stub/stats", timeout=5).read())


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start_stub(*args: str, port: int | None = None) -> Stub:
    port = port or free_port()
    proc = subprocess.Popen(
        [PY, str(REPO / "tests" / "stub_server.py"), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    return Stub(port, proc)


DEFAULTS = dict(
    chunks=30,
    first_delay_ms=0.0,
    chunk_delay_ms=0.0,
    slots=0,
    fault="none",
    fault_every=1,
    fault_status=500,
    slow_headers_ms=2000.0,
    cut_after_chunks=3,
    model="stub-model",
    api_key="",
    dialect="vllm",
    answers="",
    tokenize=0,
)


@pytest.fixture(scope="module")
def stub_server():
    stub = start_stub()
    yield stub
    stop_process(stub.proc)


@pytest.fixture
def stub(stub_server):
    stub_server.configure(**DEFAULTS)
    stub_server.reset()
    return stub_server


def master_port_args() -> list[str]:
    """A free port for Locust's master and its workers (not the fixed 5557 every run shares)."""
    port = str(free_port())
    return ["--master-bind-port", port, "--master-port", port]


def run_locust(
    locustfile: str, host: str, *args: str, timeout_s: float = 300, env: dict | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    cmd = [LOCUST, "-f", str(REPO / locustfile), "--headless", "-H", host, "--only-summary", *args]
    if "--processes" in args:
        cmd += master_port_args()
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env={**os.environ, **(env or {})}
    )


CPU_SERVER_BLOCK = 32


def pytest_collection_modifyitems(items):
    """The tests on the shared CPU server run last, one after another: it starts once (each start
    costs minutes: three processes import vLLM and compile the model). They count as engine tests,
    which scripts/test.sh never runs beside a realtime one."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "cpu_server" in fixtures:
            item.add_marker(pytest.mark.engine)
        if "stub" in fixtures or "stub_server" in fixtures:
            item.add_marker(pytest.mark.stub)
    items.sort(key=lambda item: "cpu_server" in getattr(item, "fixturenames", ()))


MISSING = ("not installed", "not present")  # what a skip for a missing engine, browser or dataset says


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip for a missing part fails: CI installs everything, so such a skip would
    hide a check. A skip because this machine cannot run a variant stays a skip."""
    outcome = yield
    report = outcome.get_result()
    missing = report.skipped and not hasattr(report, "wasxfail") and any(m in str(report.longrepr) for m in MISSING)
    if os.environ.get("CI") == "true" and missing:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a part is missing, so this check did not run: {report.longrepr}"


TOOLS_PROFILE = REPO / "profiles" / "tasks" / "smart_home-cpu-tiny.yaml"


@pytest.fixture(scope="session")
def cpu_server(tmp_path_factory):
    """One bf16 tiny-model vLLM CPU server for every test that only needs a server to talk to (started
    once, for the tests pytest_collection_modifyitems puts at the end): the demo profile, with the tool
    calling and context length of smart_home's profile so that its task test is served here too."""
    from llmcap.profile import load_profile
    from serving.launcher import Server
    from tests.engine import cpu_profile, engine_available

    if not engine_available():
        pytest.skip("vLLM CPU engine not installed (scripts/install-cpu-engine.sh)")
    profile = cpu_profile()
    tools = load_profile(TOOLS_PROFILE).serving
    profile.serving.max_model_len = tools.max_model_len
    # the CPU attention's smallest block: its default, 128, is longer than text2sql's questions, and
    # test_prefix_cache counts the cache's hits in whole blocks
    extra = [a for a in tools.extra_args if a not in profile.serving.extra_args]
    extra += ["--block-size", str(CPU_SERVER_BLOCK)]
    profile.serving.extra_args = [*profile.serving.extra_args, *extra]
    server = Server(profile, "bf16", tmp_path_factory.mktemp("cpu-server"), port=free_port())
    server.start()
    yield server
    server.stop()
