"""A fixed-rate run is a CI gate: exit 3 when its SLO failed with confidence, 0 when it held or is
undecided (the console says which), and --result-json puts result.json alone on stdout."""

import json
import subprocess

import pytest

from tests.conftest import LOCUST, REPO, run_locust


def fixed_run(stub, tmp_path, rps: str, duration: str, *args: str):
    return run_locust(
        "loadtest/text2sql.py",
        stub.url,
        *["--rps", rps, "--duration", duration, "--run-dir", str(tmp_path), "--no-report", *args],
    )


def test_a_failed_slo_exits_3_and_says_so(stub, tmp_path):
    stub.configure(first_delay_ms=50)
    run = fixed_run(stub, tmp_path, "8", "4", "--slo-p95-ms", "10")
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "req/s for 4 s: the SLO failed (exit 3): p95" in run.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "rps,verdict,decision",
    [
        ("40", "the SLO held at 95 % confidence", "pass"),
        ("5", "undecided at 95 %, neither held nor failed", "marginal"),
    ],
)
def test_a_held_or_undecided_slo_exits_0_and_the_json_is_stdout_alone(stub, tmp_path, rps, verdict, decision):
    """40 req/s for 3 s: about 120 requests, none over 1 s, a pass at 95 % (59 would do); 5 req/s:
    about 15, too few to be sure of a p95 either way."""
    run = fixed_run(stub, tmp_path, rps, "3", "--result-json")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"req/s for 3 s: {verdict}" in run.stderr
    (line,) = run.stdout.splitlines()  # the console's lines went to stderr
    result = json.loads(line)
    assert result == json.loads((tmp_path / "result.json").read_text())
    assert result["mode"] == "fixed" and result["steps"][0]["decision"] == decision


@pytest.mark.parametrize("flag", [[], ["--locust-stats"]], ids=["quiet", "locust-stats"])
def test_locust_prints_its_table_every_2_s_only_when_asked(stub, tmp_path, flag):
    """Its percentiles are approximate and would sit beside llmcap's exact ones; the summary at the
    end stays (one table of counts, "# fails |" in its header)."""
    cmd = [LOCUST, "-f", str(REPO / "loadtest/text2sql.py"), "--headless", "-H", stub.url, *flag]
    run = subprocess.run(
        [*cmd, "--rps", "5", "--duration", "5", "--run-dir", str(tmp_path), "--no-report"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    tables = (run.stdout + run.stderr).count("# fails |")
    assert tables == 1 if not flag else tables >= 3, run.stdout + run.stderr
