"""The Grafana dashboard against a real Prometheus: Debian's, with dashboards/prometheus.yml's jobs
pointed at the real vLLM CPU engine, a second vLLM (its /metrics as recorded from the first, served
apart), the GPU exporter over a fake NVML and a load generator's own /metrics while it searches.
Every query of every panel, and every variable's, is asked through Prometheus's HTTP API with the
template variables and Grafana's macros substituted: each returns data (EVENT_ONLY apart), and the
two vLLM servers stay two series."""

import http.server
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml
from prometheus_client import start_http_server

from serving.gpu_exporter import GpuMetrics
from tests.conftest import LOCUST, REPO, free_port
from tests.test_dashboard import DASHBOARD
from tests.test_gpu_exporter import FakeNvml

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus not installed (scripts/install-prometheus.sh)")
# true only during an event (a throttled GPU): no series otherwise, by design
EVENT_ONLY = {"llmcap_gpu_throttle_active"}
# Grafana's $__rate_interval on a 1-s scrape is 4 s at the least; 10 s holds several scrapes
RATE_INTERVAL = "10s"
SEARCH = ["--start-rps", "8", "--max-rps", "8", "--max-tokens", "8", "--slo-p95-ms", "5000"]
SEARCH += ["--step-seconds", "3", "--warmup-seconds", "1", "--confirm-seconds", "5", "--max-step-seconds", "24"]


def substituted(expr: str) -> str:
    """Grafana's view of a query: every variable 'All' (any value), the rate window fixed."""
    return re.sub(r"\$\{?(\w+)\}?", ".+", expr.replace("$__rate_interval", RATE_INTERVAL))


def variable_query(query: str) -> str:
    """label_values(EXPR, LABEL) as PromQL: one series per value the variable offers."""
    expr, label = re.fullmatch(r"label_values\((.*), (\w+)\)", query).groups()
    return f"count by ({label}) ({substituted(expr)})"


def ask(base: str, query: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    reply = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert reply["status"] == "success", (query, reply)
    return reply["data"]["result"]


def serve_text(text: str) -> http.server.ThreadingHTTPServer:
    """A /metrics that always answers `text` (a recorded vLLM), on a port of its own."""

    class Recorded(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def scrape_config(tmp_path, targets: dict[str, list[str]]):
    """dashboards/prometheus.yml, its jobs pointed at this test's targets (every job must be given one)."""
    config = yaml.safe_load((REPO / "dashboards" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets.pop(job["job_name"])}]
    assert not targets, f"jobs the shipped config lacks: {sorted(targets)}"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def dashboard_queries() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    board = json.loads(DASHBOARD.read_text())
    panels = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    variables = [(v["name"], v["definition"]) for v in board["templating"]["list"] if v.get("type") == "query"]
    return panels, variables


def test_every_query_of_the_dashboard_returns_data_from_a_real_prometheus(cpu_server, tmp_path):
    live = cpu_server.url.removeprefix("http://")
    recorded = serve_text(urllib.request.urlopen(cpu_server.url + "/metrics", timeout=10).read().decode())
    gpu = GpuMetrics(FakeNvml())
    gpu.sample()
    gpu_server, _ = start_http_server(0, addr="127.0.0.1", registry=gpu.registry)
    load_port, prom_port = free_port(), free_port()
    config = scrape_config(
        tmp_path,
        {
            "vllm": [live, f"127.0.0.1:{recorded.server_address[1]}"],
            "llmcap-gpu": [f"127.0.0.1:{gpu_server.server_port}"],
            "llmcap": [f"127.0.0.1:{load_port}"],
        },
    )
    panels, variables = dashboard_queries()
    queries = {substituted(e): title for title, e in panels if not EVENT_ONLY & set(re.findall(r"\w+", e))}
    queries |= {variable_query(q): f"variable {name}" for name, q in variables}
    base, log = f"http://127.0.0.1:{prom_port}", tmp_path / "locust.log"
    with open(tmp_path / "prometheus.log", "w") as prometheus_log, open(log, "w") as locust_log:
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
            + [f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL,
            stderr=prometheus_log,
        )
        search = None
        try:
            wait_ready(base, prometheus, tmp_path)
            cmd = [LOCUST, "-f", str(REPO / "loadtest/text2sql.py"), "--headless", "-H", cpu_server.url]
            cmd += ["--only-summary", "--run-dir", str(tmp_path / "run"), "--no-report", "--prometheus-port"]
            search = subprocess.Popen([*cmd, str(load_port), *SEARCH], stdout=locust_log, stderr=subprocess.STDOUT)
            answered = ask_until_answered(base, queries, live, search)
        finally:
            for process in (search, prometheus):
                stop(process)
            recorded.shutdown()
            gpu_server.shutdown()
    pending = {q: t for q, t in queries.items() if q not in answered}
    assert not pending, f"no data for {len(pending)} queries: {pending}; locust: {log.read_text()[-2000:]}"
    assert len(answered["count by (instance) (vllm:num_requests_running)"]) == 2  # two servers to choose from
    print(f"{len(panels) - len(EVENT_ONLY)} of {len(panels)} panel queries and {len(variables)} variables answered")


def ask_until_answered(base: str, queries: dict, live: str, search: subprocess.Popen) -> dict[str, list]:
    """Each query's first answer with data, asked once a second while the search runs (its own series
    go stale once it stops). A vLLM query counts once both servers are in it, the live one with a
    number (a histogram over counters that did not move is NaN)."""
    answered: dict[str, list] = {}
    deadline = time.time() + 120
    while len(answered) < len(queries) and time.time() < deadline and search.poll() is None:
        for query in queries.keys() - answered.keys():
            found = ask(base, query)
            by_instance = {s["metric"]["instance"]: float(s["value"][1]) for s in found if "instance" in s["metric"]}
            if "vllm:" in query and by_instance:
                if len(by_instance) < 2 or not math.isfinite(by_instance.get(live, math.nan)):
                    continue
            if found:
                answered[query] = found
        time.sleep(1)
    return answered


def stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_ready(base: str, prometheus: subprocess.Popen, tmp_path) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        try:
            urllib.request.urlopen(f"{base}/-/ready", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("Prometheus not ready in 60 s: " + (tmp_path / "prometheus.log").read_text()[-2000:])
