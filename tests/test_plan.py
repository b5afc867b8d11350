"""`llmcap plan`'s own logic against a running server (the stub, engine external): repeats in turn,
the comparison from them, and a stop by SIGTERM. The launcher's part is in test_plan_engine.py."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_engines import LLMCAP, write_profile

pytestmark = pytest.mark.slow  # each a plan of searches on the stub

# barely growing and never converging: the search cannot end by itself before the signal, on any machine
ENDLESS = [
    "--",
    "--step-seconds",
    "4",
    "--warmup-seconds",
    "2",
    "--start-rps",
    "2",
    "--min-requests",
    "4",
    "--max-step-seconds",
    "8",
    "--growth",
    "1.1",
    "--precision",
    "0.001",
]
# at write_profile's cap of 40 req/s from the start: the stub answers far under the bound
SHORT = ["--", "--step-seconds", "3", "--warmup-seconds", "1", "--confirm-seconds", "3", "--max-step-seconds", "8"]
SHORT += ["--start-rps", "40"]


def two_variant_profile(path: Path, url: str) -> Path:
    return write_profile(path, engine="external", url=url, variants={"a": {}, "b": {}})


def test_plan_repeats_run_in_turn_and_compare_from_the_repeats(stub, tmp_path):
    """--repeats 2: a b a b (a drift falls on both alike), each run kept in its own folder, and the
    change is stated from the repeated searches, with a verdict."""
    stub.configure(chunks=2)
    plan_dir = tmp_path / "plan"
    cmd = [LLMCAP, "plan", str(two_variant_profile(tmp_path / "p.yaml", stub.url)), "--out", str(plan_dir)]
    run = subprocess.run([*cmd, "--repeats", "2", *SHORT], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    done = [line.split(":")[1].strip() for line in run.stdout.splitlines() if "(run " in line and ": ok (" in line]
    assert done == ["a (run 1 of 2)", "b (run 1 of 2)", "a (run 2 of 2)", "b (run 2 of 2)"], run.stdout[-3000:]
    for variant in ("a", "b"):
        for k in (1, 2):
            cap = json.loads((plan_dir / variant / f"run-{k}" / "capacity.json").read_text())
            assert cap["max_sustained_rps"] == 40.0, cap  # the cap: the stub answers far under the bound
    comparison = json.loads((plan_dir / "comparison.json").read_text())
    b = {v["variant"]: v for v in comparison["variants"]}["b"]
    assert b["repeats"] == 2 and b["max_sustained_rps_runs"] == [40.0, 40.0] and b["max_sustained_rps"] == 40.0
    change = b["max_sustained_rps_change"]
    assert change["basis"] == "2 and 2 repeated searches" and change["verdict"] in ("significant", "within noise")
    assert change["verdict"] in (plan_dir / "comparison.md").read_text()
    # `llmcap report PLAN_DIR` writes it all again from what the runs recorded, repeats included
    written = ("comparison.md", "comparison.json", "index.md", "a/run-2/report.md")
    before = {name: (plan_dir / name).read_text() for name in written}
    for name in written:
        (plan_dir / name).unlink()
    again = subprocess.run([LLMCAP, "report", str(plan_dir)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {name: (plan_dir / name).read_text() for name in written} == before


def test_plan_stopped_by_sigterm_keeps_what_it_measured(stub, tmp_path):
    """SIGTERM (a job runner's stop) ends the plan as Ctrl-C does: exit 130, the partial search
    reported as such, no load generator left (the engine's own cleanup: test_plan_engine)."""
    plan_dir = tmp_path / "plan"
    profile = two_variant_profile(tmp_path / "p.yaml", stub.url)
    cmd = [LLMCAP, "plan", str(profile), "--out", str(plan_dir), "--variants", "a", "--processes", "2", *ENDLESS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    stop_mid_search(proc, plan_dir, "a", signal.SIGTERM, wait_s=120)


def stop_mid_search(proc: subprocess.Popen, plan_dir: Path, variant: str, sig: int, wait_s: float) -> None:
    """Once the variant's first step is on disk, send `sig`: the plan exits 130 with the partial search
    reported as such and no load generator left (the caller checks what else it started)."""
    steps = plan_dir / variant / "steps.jsonl"
    deadline = time.time() + wait_s
    while time.time() < deadline and not (steps.exists() and steps.read_text().strip()):
        time.sleep(0.5)
    assert steps.exists(), "no step finished in time"
    locusts = subprocess.run(["pgrep", "-f", f"run-dir {plan_dir}"], capture_output=True, text=True).stdout.split()
    assert locusts, "no load generator found to watch"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    result = json.loads((plan_dir / variant / "result.json").read_text())
    assert result["partial"] is True and result["steps"]
    assert "PARTIAL RUN" in (plan_dir / variant / "report.md").read_text()
    assert "INTERRUPTED" in (plan_dir / "index.md").read_text()
    time.sleep(1)
    alive = [p for p in locusts if os.path.exists(f"/proc/{p}")]
    assert not alive, f"load generators left behind: {alive}"
