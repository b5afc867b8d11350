"""Server faults during a run: each request is counted with its error kind, the verdict reflects it,
and every sample taken is on disk and in the report (docs/reliability.md lists these)."""

import json
import subprocess
import time

import numpy as np
import pytest

from llmcap.rundir import ERROR_KINDS, read_errors, read_samples
from tests.conftest import LOCUST, REPO, run_locust, start_stub, stop_process

FAULTS = [  # stub fault settings, expected error kind
    (dict(fault="status", fault_status=500), "http_status"),
    (dict(fault="status", fault_status=503), "http_status"),
    (dict(fault="status", fault_status=429), "http_status"),
    (dict(fault="stall"), "timeout"),
    (dict(fault="cut"), "bad_stream"),
    (dict(fault="malformed"), "bad_stream"),
    (dict(fault="error_event"), "bad_stream"),
    (dict(fault="no_tokens"), "no_tokens"),
    (dict(fault="slow_headers", slow_headers_ms=4000), "timeout"),
]


@pytest.mark.parametrize("settings,kind", FAULTS, ids=[f"{s['fault']}{s.get('fault_status', '')}" for s, _ in FAULTS])
def test_fault_is_counted_and_kept(stub, tmp_path, settings, kind):
    stub.configure(chunks=5, chunk_delay_ms=2, fault_every=4, **settings)
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        "10",
        "--duration",
        "4",
        "--run-dir",
        str(run_dir),
        "--request-timeout-s",
        "1.5",
    )
    assert run.returncode == 3, run.stderr[-2000:]  # a quarter failed: the SLO's error rate failed
    samples, _ = read_samples(run_dir)
    server_saw = stub.stats()["requests"]
    assert len(samples) == server_saw  # every request sent is on disk, failed or not
    kinds = [ERROR_KINDS[e] for e in samples["error"]]
    failed = [k for k in kinds if k]
    assert set(failed) == {kind}, set(failed)
    assert 0.15 <= len(failed) / len(samples) <= 0.35  # every 4th request
    errors = read_errors(run_dir)
    assert len(errors) == len(failed) and all(e["kind"] == kind and e["message"] for e in errors)
    step = json.loads((run_dir / "result.json").read_text())["steps"][0]
    assert not step["passed"] and "error rate" in step["reason"] and kind in step["reason"]
    report = (run_dir / "report.md").read_text()
    assert "FAIL" in report and "error rate" in report


@pytest.mark.stub  # its own stub, killed and restarted
def test_server_killed_and_restarted_mid_run(tmp_path):
    stub = start_stub("--chunks", "5")
    port = stub.port
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            LOCUST,
            "-f",
            str(REPO / "loadtest/text2sql.py"),
            "--headless",
            "--only-summary",
            "-H",
            stub.url,
            "--rps",
            "20",
            "--duration",
            "9",
            "--run-dir",
            str(run_dir),
            "--request-timeout-s",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        stub.proc.kill()  # the server dies mid-step
        stub.proc.wait()
        killed = time.time()
        time.sleep(2)
        stub = start_stub("--chunks", "5", port=port)  # and comes back on the same port
        back = time.time()
        out, err = proc.communicate(timeout=60)
    finally:
        stop_process(stub.proc)
    assert proc.returncode == 3, err[-2000:]  # the run went on; two seconds of errors failed its SLO
    samples, _ = read_samples(run_dir)
    t = samples["scheduled_s"]
    ok = samples["error"] == 0
    assert ok[t < killed - 0.5].all()  # before the kill
    down = (t > killed + 0.2) & (t < back - 0.5)
    assert down.sum() >= 10 and not ok[down].any()  # while it was down: errors, none lost
    assert {ERROR_KINDS[e] for e in samples["error"][down]} <= {"connect", "bad_stream"}
    assert ok[t > back + 0.5].mean() > 0.9  # after the restart
    # every request due is on disk, however many Poisson put in 9 s at 20 req/s (within 4 sigma of 180)
    scheduled = json.loads((run_dir / "result.json").read_text())["steps"][0]["scheduled"]
    assert len(samples) == scheduled and 126 <= scheduled <= 234, (len(samples), scheduled)
    assert (run_dir / "report.html").exists()


def test_server_failing_everything_exits_3(stub, tmp_path):
    """Errors decide a step without the wall clock's help: no timing here, so not a realtime test."""
    stub.configure(fault="status", fault_status=503)
    run_dir = tmp_path / "run"
    args = ["--start-rps", "40", "--warmup-seconds", "1", "--min-rps", "10", "--run-dir", str(run_dir)]
    run = run_locust("loadtest/text2sql.py", stub.url, *args)
    assert run.returncode == 3, run.stdout[-2000:]
    assert "no sustained rate: even 10 req/s fails" in run.stdout and "error rate 100.0%" in run.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["max_sustained_rps"] is None
    assert [(s["offered_rps"], s["phase"]) for s in result["steps"]] == [(40, "grow"), (20, "descend"), (10, "descend")]


def test_search_with_a_failing_server_reports_each_step(stub, tmp_path):
    """A burst of 503s at one step: that step fails on errors, the run goes on and says why."""
    stub.configure(chunks=3, fault="status", fault_status=503, fault_every=2)
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--run-dir",
        str(run_dir),
        "--start-rps",
        "5",
        "--step-seconds",
        "3",
        "--warmup-seconds",
        "1",
        "--min-rps",
        "2.5",
    )
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"][0]["errors"] == {"http_status": result["steps"][0]["failed"]}
    assert np.isclose(result["steps"][0]["error_rate"], 0.5, atol=0.15)
