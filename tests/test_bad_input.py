"""Bad input: one line naming the problem, exit code 2, never a traceback."""

import subprocess
import sys
import time

import pytest

from tests.conftest import PY, free_port, run_locust, stop_process, wait_http

MINIMAL = "name: t\nmodel: {id: some/model}\nserving: {variants: {bf16: {dtype: bfloat16}}}\n"


def one_line_error(run, *fragments):
    assert run.returncode == 2, (run.returncode, run.stdout[-1000:], run.stderr[-1000:])
    ours = [line for line in run.stderr.splitlines() if line.startswith("llmcap")]
    assert len(ours) == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    for f in fragments:
        assert f in ours[0], ours[0]
    return ours[0]


def run_profile(stub, tmp_path, profile):
    """A one-second fixed-rate run with `profile` against the stub."""
    args = ["--llmcap-profile", str(profile), "--rps", "1", "--duration", "1", "--run-dir", str(tmp_path / "run")]
    return run_locust("loadtest/text2sql.py", stub.url, *args)


@pytest.mark.parametrize(
    "profile,fragments",
    [
        ("name: t\nmodel: {id: [unclosed\n", ["malformed YAML"]),
        (MINIMAL + "slo: {p95: 300}\n", ["slo.p95: unknown key"]),
        (MINIMAL + "search: {start_rps: many}\n", ["search.start_rps: expected"]),
        (MINIMAL + "search: {confidence: 1.5}\n", ["search.confidence: expected a number in [0.5, 1), got 1.5"]),
        (MINIMAL + "search: {step_seconds: 30, max_step_seconds: 10}\n", ["max_step_seconds >= step_seconds"]),
        (MINIMAL + "dataset: {path: missing.jsonl}\n", ["dataset.path: file not found"]),
        (MINIMAL + "traffic: {trace: missing.csv}\n", ["traffic.trace: file not found"]),
        (MINIMAL + "traffic: {peak_rps: 100, target_utilization: 1.5}\n", ["traffic.target_utilization: expected"]),
    ],
)
def test_bad_profiles(stub, tmp_path, profile, fragments):
    path = tmp_path / "p.yaml"
    path.write_text(profile)
    run = run_profile(stub, tmp_path, path)
    assert run.returncode == 2
    one_line_error(run, "p.yaml", *fragments)


@pytest.mark.parametrize(
    "section,content,fragments",
    [
        ("traffic: {trace: t.csv}", "minute,requests\n0,10\n1,ten\n", ["t.csv:3: expected a count of requests"]),
        ("search: {arrival: trace, trace: t.csv}", "timestamp\n1.5\nlater\n", ["t.csv:3: timestamp: expected a time"]),
        ("search: {arrival: trace}", None, ["arrival 'trace' needs a trace file: --trace FILE"]),
        ("search: {trace: t.csv}", "requests\n5\n", ["is played only with --arrival trace"]),
    ],
)
def test_bad_traces_fail_a_bare_locust_run_before_any_load(stub, tmp_path, section, content, fragments):
    """A trace in the profile is read when the profile is (plan and a bare Locust run alike)."""
    if content is not None:
        (tmp_path / "t.csv").write_text(content)
    (tmp_path / "p.yaml").write_text(MINIMAL + section + "\n")
    run = run_profile(stub, tmp_path, tmp_path / "p.yaml")
    one_line_error(run, *fragments)
    assert stub.stats()["requests"] == 0


@pytest.mark.parametrize(
    "content,fragments",
    [
        ("", ["dataset is empty"]),
        ('{"question": "q1"}\n{"question": \n', ["d.jsonl:2: not valid JSON"]),
        ('{"question": "q1"}\n{"answer": "no question"}\n', ["d.jsonl:2: missing field 'question'"]),
    ],
)
def test_bad_datasets(stub, tmp_path, content, fragments):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--dataset",
        str(path),
        "--rps",
        "1",
        "--duration",
        "1",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert run.returncode == 2
    one_line_error(run, *fragments)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sample", "0"], "--sample: expected an integer >= 1, got 0"),
        (["--rps", "-5"], "--rps: expected a number > 0, got -5.0"),
        (["--duration", "-1"], "--duration: expected a number > 0, got -1.0"),
        (["--slo-p95-ms", "-10"], "--slo-p95-ms: expected a number > 0, got -10.0"),
        (
            ["--slo", "ttft_p99_ms=2000,tpot_p100_ms=5"],
            "--slo: tpot_p100_ms: the percentile must be from p50 to p99.9 (p99.9, not p999), got p100",
        ),
        (["--max-error-rate", "5"], "--max-error-rate: expected a number in [0, 1], got 5.0"),
        (["--confidence", "1"], "--confidence: expected a number in [0.5, 1), got 1.0"),
        (["--turns", "0"], "--turns: expected an integer >= 1, got 0"),
    ],
)
def test_an_argument_out_of_range_fails_before_any_load(stub, tmp_path, args, message):
    run = run_locust("loadtest/text2sql.py", stub.url, *args, "--run-dir", str(tmp_path / "run"))
    assert one_line_error(run).endswith(message)
    assert stub.stats()["requests"] == 0 and not (tmp_path / "run").exists()


def test_missing_dataset(stub, tmp_path):
    run = run_locust("loadtest/text2sql.py", stub.url, "--dataset", str(tmp_path / "nope.jsonl"))
    one_line_error(run, "nope.jsonl: dataset file not found")


def test_unreachable_host_fails_fast(tmp_path):
    t0 = time.time()
    run = run_locust("loadtest/text2sql.py", f"http://127.0.0.1:{free_port()}", "--run-dir", str(tmp_path / "r"))
    assert time.time() - t0 < 10
    one_line_error(run, "cannot reach the server")
    assert not (tmp_path / "r" / "samples.bin").exists()  # failed before any load


def test_not_an_openai_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        run = run_locust("loadtest/text2sql.py", f"http://127.0.0.1:{port}")
        one_line_error(run, "/v1/models: HTTP 404", "not an OpenAI-compatible server")
    finally:
        stop_process(proc)


def test_model_not_served(stub, tmp_path):
    run = run_locust("loadtest/text2sql.py", stub.url, "--model", "gpt-9", "--run-dir", str(tmp_path / "r"))
    one_line_error(run, "model 'gpt-9' is not served", "stub-model")


def test_run_directory_not_writable(stub, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = run_locust(
        "loadtest/text2sql.py", stub.url, "--rps", "1", "--duration", "1", "--run-dir", str(blocker / "run")
    )
    one_line_error(run, "cannot write the run directory")


def test_cli_bad_profile_and_missing_run_dir(tmp_path):
    llmcap = [sys.executable, "-m", "llmcap.cli"]
    run = subprocess.run(
        [*llmcap, "serve", str(tmp_path / "none.yaml"), "--variant", "bf16", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.strip().endswith("profile not found") and "Traceback" not in run.stderr
    run = subprocess.run([*llmcap, "report", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "not a run directory" in run.stderr
    (tmp_path / "p.yaml").write_text(MINIMAL)
    run = subprocess.run(
        [*llmcap, "serve", str(tmp_path / "p.yaml"), "--variant", "fp8", "--dry-run"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "no variant 'fp8'" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([*llmcap, "plan", str(tmp_path / "p.yaml"), "--repeats", "0"], capture_output=True, text=True)
    assert run.returncode == 2 and "--repeats 0: expected 1 or more" in run.stderr and "Traceback" not in run.stderr


def test_plan_names_the_load_tests_reason(tmp_path):
    """A load test that stops on bad input: `plan` repeats its one-line reason, not just an exit code."""
    from llmcap.plan import _last_llmcap_line

    log = tmp_path / "locust.log"
    log.write_text("[2026-11-28] vm/INFO/locust.main: Starting Locust\nllmcap: d.jsonl:2: not valid JSON (x)\n")
    assert _last_llmcap_line(log) == "d.jsonl:2: not valid JSON (x)"
    log.write_text("nothing of ours\n")
    assert _last_llmcap_line(log) is None
    assert _last_llmcap_line(tmp_path / "missing.log") is None
