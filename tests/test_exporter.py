"""llmcap's own /metrics (loadtest/exporter.py): the gauges are the run's exact figures, parsed back
with prometheus_client's own parser, and a real run serves them while it offers load."""

import argparse
import socket
import subprocess
import time
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmcap.profile import Slo
from loadtest.console import ProgressFile
from loadtest.exporter import STEP_LATENCY, LoadView
from loadtest.run_state import RunState
from loadtest.settings import resolve
from loadtest.simulated import simulate_search
from tests.conftest import LOCUST, REPO, free_port
from tests.test_search_sim import SETTINGS


def parsed(text: str) -> dict[tuple, float]:
    return {
        (s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def scrape(state: RunState) -> dict[tuple, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoadView(state))
    return parsed(generate_latest(registry).decode())


SETTING = SETTINGS["few-slots"]


def searched_state(tmp_path) -> RunState:
    """The state a shipped search (in virtual time) leaves: its steps judged, its answer found."""
    outcome, _ = simulate_search(SETTING.server, SETTING.params, Slo(p95_ms=SETTING.slo_ms), 0)
    settings = resolve(argparse.Namespace(host="http://127.0.0.1:1", slo_p95_ms=SETTING.slo_ms), "text2sql")
    state = RunState(settings=settings, steps=outcome.steps, outcome=outcome, progress=ProgressFile(tmp_path))
    state.progress.tick({"phase": "grow", "offered_rps": 12.5})
    return state


def test_each_gauge_is_the_figure_the_run_recorded_exactly(tmp_path):
    state = searched_state(tmp_path)
    state.progress.last_tick = {}
    outcome, setting, settings = state.outcome, SETTING, state.settings
    state.outcome = None  # still searching
    run = ("run", settings.name)
    before = scrape(state)
    assert not any(key[0] == "llmcap_offered_requests_per_second" for key in before)  # nothing offered yet
    state.progress.tick({"phase": "grow", "offered_rps": 12.5})
    assert scrape(state)[("llmcap_offered_requests_per_second", run)] == 12.5
    state.done = True  # stopped without an answer (interrupted, or the controller failed)
    assert scrape(state)[("llmcap_offered_requests_per_second", run)] == 0
    state.done, state.outcome = False, outcome
    got = scrape(state)
    assert got[("llmcap_offered_requests_per_second", run)] == 0  # answered: the load has stopped
    last = outcome.steps[-1]
    for (metric, q), field in STEP_LATENCY.items():
        key = ("llmcap_latency_seconds", ("metric", metric), ("quantile", f"{q:g}"), run, ("window", "step"))
        assert got[key] == last[field] / 1000, (key, got.get(key), last[field])  # exact: no histogram between
    assert got[("llmcap_achieved_requests_per_second", run, ("window", "step"))] == last["achieved_rps"]
    assert got[("llmcap_slo_limit_seconds", ("metric", "e2e"), ("quantile", "0.95"), run)] == setting.slo_ms / 1000
    assert got[("llmcap_steps_judged_total", run)] == len(outcome.steps)
    answer = {
        end: got.get(("llmcap_max_sustained_requests_per_second", ("end", end), run)) for end in ("answer", "low")
    }
    assert answer == {"answer": outcome.max_sustained_rps, "low": outcome.interval_low_rps}


def test_a_run_serves_its_live_figures_while_it_offers_load(stub, tmp_path):
    port = free_port()
    cmd = [LOCUST, "-f", str(REPO / "loadtest/text2sql.py"), "--headless", "-H", stub.url, "--only-summary"]
    cmd += ["--rps", "20", "--duration", "8", "--run-dir", str(tmp_path), "--no-report", "--prometheus-port", str(port)]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict = {}
    try:
        deadline = time.time() + 60
        live = ("llmcap_achieved_requests_per_second", ("run", "text2sql"), ("window", "live"))
        while time.time() < deadline and run.poll() is None and not seen.get(live):
            try:
                seen = parsed(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode())
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
    finally:
        out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out[-2000:]
    assert seen.get(live, 0) > 0, seen
    assert seen[("llmcap_offered_requests_per_second", ("run", "text2sql"))] == 20
    e2e_p95 = (
        "llmcap_latency_seconds",
        ("metric", "e2e"),
        ("quantile", "0.95"),
        ("run", "text2sql"),
        ("window", "live"),
    )
    assert 0 < seen[e2e_p95] < 1, seen


def test_a_port_out_of_range_or_taken_or_an_unknown_address_is_a_one_line_error_before_any_load(stub, tmp_path):
    stub.reset()
    cmd = [LOCUST, "-f", str(REPO / "loadtest/text2sql.py"), "--headless", "-H", stub.url, "--only-summary"]
    cmd += ["--rps", "5", "--duration", "2", "--run-dir", str(tmp_path), "--no-report", "--prometheus-port"]
    bad = subprocess.run([*cmd, "70000"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--prometheus-port" in bad.stderr, bad.stderr[-2000:]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        taken = listening.getsockname()[1]
        busy = subprocess.run([*cmd, str(taken)], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 2 and f"--prometheus-port {taken}, --prometheus-bind" in busy.stderr, busy.stderr[-2000:]
    nowhere = subprocess.run(
        [*cmd, str(free_port()), "--prometheus-bind", "192.0.2.1"],  # TEST-NET-1: no machine of ours has it
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nowhere.returncode == 2 and "--prometheus-bind 192.0.2.1: cannot listen" in nowhere.stderr, nowhere.stderr
    assert stub.stats()["requests"] == 0  # refused before any load


def test_the_step_window_has_each_percentile_the_slo_bounds(tmp_path):
    """An SLO at p99.9, which STEP_LATENCY does not list: the step's own figure at that bound is served."""
    settings = resolve(argparse.Namespace(host="http://127.0.0.1:1", slo="e2e_p99.9_ms=900"), "text2sql")
    key = settings.slo.latency_bounds()[0].key
    state = RunState(settings=settings, steps=[{"at_bounds": {key: 812.5}, "achieved_rps": 3.0}])
    got = scrape(state)
    e2e_p999 = ("llmcap_latency_seconds", ("metric", "e2e"), ("quantile", "0.999"), ("run", settings.name))
    assert got[(*e2e_p999, ("window", "step"))] == 0.8125
    assert got[("llmcap_slo_limit_seconds", ("metric", "e2e"), ("quantile", "0.999"), ("run", settings.name))] == 0.9
