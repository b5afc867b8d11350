"""The closed loop (--concurrency): N requests kept open, the server sets the rate. Against the stub as
an M/D/C queue (C slots, a fixed service time S) the answer is known: at concurrency n the throughput
is min(n, C) / S, and past C every request waits its turn, so latency is n / C x S (Little's law)."""

import json
import subprocess

import pytest

from loadtest.arrivals import Dispatcher
from loadtest.closed_loop import parse_levels
from tests.conftest import REPO, run_locust
from tests.test_engines import LLMCAP, write_profile

pytestmark = pytest.mark.realtime  # timing against the wall clock: run alone (scripts/test.sh)

SLOTS, SERVICE_S = 4, 0.2


def test_the_dispatcher_keeps_n_open_and_replaces_each_finished_one():
    d = Dispatcher()
    d.set_concurrency(3)
    assert d.tickets.qsize() == 3 and d.in_loop == 3
    d.tickets.get_nowait()
    d.finished()  # one ended: its replacement is due now
    assert d.tickets.qsize() == 3 and d.issued == 4
    d.set_concurrency(1)  # lowered: the next two finish unreplaced
    d.finished()
    d.finished()
    assert d.issued == 4 and d.in_loop == 1
    d.finished()
    assert d.issued == 5
    d.set_rate(0)  # stopped: nothing replaced any more
    d.finished()
    assert d.issued == 5


@pytest.mark.parametrize("text,levels", [("8", [8]), ("1,4,16", [1, 4, 16]), (" 2, 3 ", [2, 3])])
def test_levels_parse(text, levels):
    assert parse_levels(text) == levels


@pytest.mark.parametrize("text", ["0", "a,b", "", "4,-1"])
def test_bad_levels_are_named(text):
    with pytest.raises(ValueError, match="--concurrency"):
        parse_levels(text)


def closed_run(stub, tmp_path, levels: str, *extra: str) -> dict:
    stub.configure(slots=SLOTS, first_delay_ms=SERVICE_S * 1000, chunks=1)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--concurrency",
        levels,
        "--duration",
        "10",
        "--warmup-seconds",
        "2",
        "--run-dir",
        str(tmp_path / "run"),
        "--slo-p95-ms",
        "1000",
        *extra,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "closed-loop run done" in run.stdout
    return json.loads((tmp_path / "run" / "result.json").read_text())


@pytest.mark.slow
def test_throughput_is_slots_over_service_time_at_and_past_the_slots(stub, tmp_path):
    result = closed_run(stub, tmp_path, "2,4,8")
    assert result["mode"] == "concurrency" and result["max_sustained_rps"] is None
    by_level = {s["concurrency"]: s for s in result["steps"]}
    for n, step in by_level.items():
        expected_rps = min(n, SLOTS) / SERVICE_S
        print(
            f"concurrency {n}: {step['achieved_rps']:.2f} req/s (expected {expected_rps:.1f}), "
            f"p50 {step['p50_ms']:.0f} ms"
        )
        assert step["achieved_rps"] == pytest.approx(expected_rps, rel=0.05)
        # Little's law: past the slots a request waits for n / C services in all
        assert step["p50_ms"] == pytest.approx(max(n / SLOTS, 1) * SERVICE_S * 1000, rel=0.10)
    assert by_level[8]["decision"] == "pass"  # p95 ~400 ms against a 1000 ms bound
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Closed loop" in report and "Max sustained rate" not in report


def test_a_closed_loop_split_over_processes_keeps_n_open_in_all(stub, tmp_path):
    result = closed_run(stub, tmp_path, "8", "--processes", "2")
    step = result["steps"][0]
    print(f"2 processes, concurrency 8: {step['achieved_rps']:.2f} req/s, p50 {step['p50_ms']:.0f} ms")
    assert step["achieved_rps"] == pytest.approx(SLOTS / SERVICE_S, rel=0.05)
    assert step["p50_ms"] == pytest.approx(2 * SERVICE_S * 1000, rel=0.10)  # 8 open on 4 slots: two turns


def test_concurrency_and_a_fixed_rate_are_two_modes(stub, tmp_path):
    run = run_locust("loadtest/text2sql.py", stub.url, "--concurrency", "4", "--rps", "5", "--run-dir", str(tmp_path))
    assert run.returncode == 2
    assert "--rps and --concurrency" in run.stderr


@pytest.mark.slow
def test_plan_sweeps_the_closed_loop_after_the_search_and_compares_both_views(stub, tmp_path):
    """`llmcap plan --concurrency`: on the same server, after its search; the comparison shows the
    closed loop's levels beside the sustained rate."""
    stub.configure(slots=SLOTS, first_delay_ms=SERVICE_S * 1000, chunks=1)
    profile = write_profile(tmp_path / "p.yaml", engine="external", url=stub.url)
    profile.write_text(profile.read_text() + "accuracy: {enabled: false}\n")  # not what is checked here
    plan_dir = tmp_path / "plan"
    cmd = [LLMCAP, "plan", str(profile), "--out", str(plan_dir), "--concurrency", "2,8", "--concurrency-seconds", "6"]
    cmd += ["--", "--step-seconds", "4", "--warmup-seconds", "1", "--confirm-seconds", "4", "--max-step-seconds", "8"]
    cmd += ["--start-rps", "12", "--max-rps", "12"]  # the search is not what is checked here: one rate, 60 % busy
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    sweep = json.loads((plan_dir / "only" / "closed-loop" / "result.json").read_text())
    assert sweep["mode"] == "concurrency" and [s["concurrency"] for s in sweep["steps"]] == [2, 8]
    assert sweep["steps"][1]["achieved_rps"] == pytest.approx(SLOTS / SERVICE_S, rel=0.05)
    comparison = json.loads((plan_dir / "comparison.json").read_text())
    assert [level["concurrency"] for level in comparison["closed_loop"]["only"]] == [2, 8]
    text = (plan_dir / "comparison.md").read_text()
    assert "## Closed loop" in text and "max sustained req/s" in text


def test_plan_names_bad_levels_before_any_server(tmp_path):
    profile = write_profile(tmp_path / "p.yaml", engine="external", url="http://127.0.0.1:9")
    run = subprocess.run([LLMCAP, "plan", str(profile), "--concurrency", "4,x"], capture_output=True, text=True)
    assert run.returncode == 2 and "--concurrency takes whole numbers" in run.stderr
