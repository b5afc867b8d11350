"""`llmcap run`: Locust's load test with every llmcap option in its --help, its exit code Locust's."""

import json
import subprocess
import sys

from llmcap.profile import cli_settings
from loadtest.settings import RUN_OPTIONS

LLMCAP = [sys.executable, "-m", "llmcap.cli"]


def test_help_lists_every_option_and_its_default():
    run = subprocess.run([*LLMCAP, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())  # argparse wraps lines
    for flag, *_ in RUN_OPTIONS:
        assert flag in text
    for s in cli_settings():
        assert s.flag in text
        if s.default not in (None, False, ""):
            assert f"(default {s.default})" in text, s.flag
    assert "(default e2e_p95_ms=1000)" in text and "(default 0.95)" in text  # --slo, --confidence


def test_a_task_that_does_not_exist_is_one_line():
    run = subprocess.run([*LLMCAP, "run", "nosuch", "-H", "http://127.0.0.1:9"], capture_output=True, text=True)
    assert run.returncode == 2 and "no locustfile for task 'nosuch'" in run.stderr and "Traceback" not in run.stderr


def test_run_is_the_locust_load_test_and_exits_as_it_does(stub, tmp_path):
    stub.configure(first_delay_ms=50)
    args = ["--rps", "8", "--duration", "3", "--slo-p95-ms", "10", "--run-dir", str(tmp_path), "--ignore-eos"]
    args.append("--no-report")
    run = subprocess.run([*LLMCAP, "run", "text2sql", "-H", stub.url, *args], capture_output=True, text=True)
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]  # the SLO failed: Locust's exit code
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["mode"] == "fixed" and result["steps"][0]["decision"] == "fail"
    assert result["slo"]["p95_ms"] == 10 and result["request"]["ignore_eos"] is True
    assert stub.stats()["requests"] > 0
