"""SIGINT and SIGTERM: samples flushed, a partial result and report, nothing left running."""

import json
import signal
import subprocess
import time

import pytest

from llmcap.rundir import read_samples
from tests.conftest import LOCUST, REPO, master_port_args


def default_sigint() -> None:
    # a shell without job control starts background jobs with SIGINT ignored, and children inherit
    # that; a person's Ctrl-C reaches a foreground process whose SIGINT is at its default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_steps(run_dir, n: int, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    path = run_dir / "steps.jsonl"
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{path}: fewer than {n} steps after {timeout_s} s")


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("processes", [1, 2])
def test_locust_interrupted(stub, tmp_path, sig, processes):
    stub.configure(chunks=5, first_delay_ms=20)
    run_dir = tmp_path / "run"
    cmd = [
        LOCUST,
        "-f",
        str(REPO / "loadtest/text2sql.py"),
        "--headless",
        "--only-summary",
        "-H",
        stub.url,
        "--run-dir",
        str(run_dir),
        "--start-rps",
        "10",
        "--step-seconds",
        "4",
        "--warmup-seconds",
        "1",
        # barely growing, never converging: the search cannot end by itself before the signal, on any machine
        "--growth",
        "1.05",
        "--precision",
        "0.001",
    ]
    if processes > 1:
        cmd += ["--processes", str(processes), *master_port_args()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        wait_for_steps(run_dir, 1, 90)
    except TimeoutError:
        proc.kill()  # do not leave a master holding Locust's port for the tests after this one
        out, err = proc.communicate()
        raise AssertionError(f"no step finished: {err[-3000:]}") from None
    time.sleep(2)  # interrupt in the middle of the second step
    kids = children_of(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    result = json.loads((run_dir / "result.json").read_text())
    assert result["partial"] is True and len(result["steps"]) >= 1, err[-3000:]
    samples, _ = read_samples(run_dir)
    assert len(samples) >= result["steps"][0]["scheduled"]  # what was measured is on disk
    assert "PARTIAL RUN" in (run_dir / "report.md").read_text()
    assert "interrupted" in err
    time.sleep(1)
    alive = [k for k in kids if subprocess.run(["kill", "-0", str(k)], capture_output=True).returncode == 0]
    assert not alive, f"left behind: {alive}"


def test_a_second_interrupt_while_stopping_loses_nothing(stub, tmp_path):
    """A terminal's Ctrl-C reaches `llmcap plan` and its load test both, and plan forwards one more
    (the GPU check's `timeout -s INT` did the same): the partial result must still be written."""
    stub.configure(chunks=5, first_delay_ms=20)
    run_dir = tmp_path / "run"
    cmd = [LOCUST, "-f", str(REPO / "loadtest/text2sql.py"), "--headless", "--only-summary", "-H", stub.url]
    cmd += ["--run-dir", str(run_dir), "--start-rps", "10", "--step-seconds", "4", "--warmup-seconds", "1"]
    cmd += ["--growth", "1.05", "--precision", "0.001"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    wait_for_steps(run_dir, 1, 90)
    time.sleep(2)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    result = json.loads((run_dir / "result.json").read_text())
    assert result["partial"] is True and len(result["steps"]) >= 1, err[-3000:]
    assert "PARTIAL RUN" in (run_dir / "report.md").read_text()
