"""The quality pass and the gate: the statistics with numbers, then `llmcap accuracy` against the
stub answering set texts (an external server: nothing to launch), on text and on tool calls."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmcap.confidence import bootstrap_mean_interval, paired_ratio_interval
from llmcap.rundir import read_accuracy, write_accuracy
from reports.compare import quality
from reports.quality import agreement, gate, relative_accuracy
from tests.conftest import REPO

LLMCAP = str(Path(sys.executable).with_name("llmcap"))
SHARED = REPO.parent / "shared" / "datasets"


def rows(scores: list[float], answers: list[str] | None = None) -> list[dict]:
    answers = answers or [f"a{i}" for i in range(len(scores))]
    return [
        {"record": i + 1, "answer": a, "error": None, "scores": {"exact_match": s}}
        for i, (s, a) in enumerate(zip(scores, answers, strict=True))
    ]


def test_bootstrap_intervals_with_numbers():
    right = np.array([1.0] * 30 + [0.0] * 20)
    low, high = bootstrap_mean_interval(right)
    # the normal approximation: 0.6 +- 1.96 * sqrt(0.24 / 50) = 0.6 +- 0.136
    assert low == pytest.approx(0.464, abs=0.03) and high == pytest.approx(0.736, abs=0.03)
    assert paired_ratio_interval(right, right) == (1.0, 1.0, 1.0)  # the same answers: no doubt at all
    assert paired_ratio_interval(right, np.zeros(50)) is None
    # one prompt of 30 lost: 29/30 = 96.7 %, and one prompt is all the interval can miss
    lost = right.copy()
    lost[0] = 0.0
    ratio, low, high = paired_ratio_interval(lost, right)  # type: ignore[misc]
    assert ratio == pytest.approx(29 / 30) and high == 1.0 and 0.85 < low < ratio


def test_agreement_relative_accuracy_and_the_gate():
    baseline = rows([1, 1, 1, 1, 0, 0, 1, 1, 1, 1] * 5)
    # same scores, every tenth answer worded differently
    reworded = rows([1, 1, 1, 1, 0, 0, 1, 1, 1, 1] * 5, [f"a{i}" if i % 10 else "other" for i in range(50)])
    agree = agreement(reworded, baseline, "exact_match")
    assert agree == {"n": 50, "identical": 0.9, "same_score": 1.0}
    same = relative_accuracy(reworded, baseline, "exact_match")
    assert same is not None and same["relative"] == 1.0 and same["low"] == same["high"] == 1.0
    assert gate(same, 0.99) == {"verdict": "pass", "sure": True, "threshold": 0.99}
    # 8 of the 40 right answers lost: 80 % of the baseline, clearly under 99 %
    right = [i for i, r in enumerate(baseline) if r["scores"]["exact_match"] == 1]
    worse = rows([0 if i in right[:8] else r["scores"]["exact_match"] for i, r in enumerate(baseline)])
    rel = relative_accuracy(worse, baseline, "exact_match")
    assert rel is not None and rel["relative"] == pytest.approx(32 / 40) and rel["high"] < 0.99
    assert gate(rel, 0.99)["verdict"] == "fail" and gate(rel, 0.99)["sure"]
    # one lost of 40: 97.5 %, under the threshold, but within what 50 prompts can tell
    one = rows([0 if i == 0 else s["scores"]["exact_match"] for i, s in enumerate(baseline)])
    verdict = gate(relative_accuracy(one, baseline, "exact_match"), 0.99)
    assert verdict["verdict"] == "fail" and not verdict["sure"]
    # a failed request counts as wrong; a baseline with nothing right gives no verdict
    failed = [{**r, "error": "HTTP 500", "scores": {"exact_match": 0.0}, "answer": None} for r in baseline]
    assert relative_accuracy(failed, baseline, "exact_match")["relative"] == 0.0  # type: ignore[index]
    assert gate(relative_accuracy(baseline, rows([0] * 50), "exact_match"), 0.99)["verdict"] == "no verdict"


def write_profile(tmp_path: Path, url: str, task: str, dataset: Path) -> Path:
    profile = {
        "name": "acc",
        "dataset": {"task": task, "path": str(dataset)},
        "model": {"id": "stub", "served_name": "stub-model"},
        "serving": {"engine": "external", "url": url, "variants": {"only": {}}},
        "accuracy": {"concurrency": 2},
    }
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def accuracy(profile: Path, run_dir: Path) -> subprocess.CompletedProcess:
    cmd = [LLMCAP, "accuracy", str(profile), "--variant", "only", "--run-dir", str(run_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_text2sql_answers_scored_against_the_references(stub, tmp_path):
    records = [json.loads(line) for line in (REPO / "examples" / "text2sql" / "test.jsonl").read_text().splitlines()]
    dataset = tmp_path / "four.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    question = [r["question"].split("Question:")[-1].strip() for r in records[:4]]
    answers = {
        question[0]: "  " + records[0]["answer"].lower().rstrip(";"),  # right, spelled differently
        question[1]: records[1]["answer"],  # right
        question[2]: "SELECT 1;",  # wrong
    }  # the fourth gets the stub's filler text: wrong
    stub.configure(answers=json.dumps(answers))
    run = accuracy(write_profile(tmp_path, stub.url, "text2sql", dataset), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert "exact_match 50.0 % (2 of 4 prompts" in run.stdout
    found = read_accuracy(tmp_path / "run")
    assert found is not None
    rows_, summary = found
    assert [r["scores"]["exact_match"] for r in rows_] == [1.0, 1.0, 0.0, 0.0]
    assert rows_[0]["answer"] == answers[question[0]] and rows_[3]["answer"].startswith("tok ")
    assert summary["n"] == 4 and summary["accuracy"] == 0.5 and summary["stores_text"] is True
    assert stub.stats()["requests"] >= 4


def test_prompts_without_references_are_scored_against_a_baseline_run(stub, tmp_path):
    """A prompt file (task chat) has no answers to score against: a first pass keeps its answers,
    a second is scored against them by chrF (`--baseline`), record by record; a baseline with no
    pass is one line, exit 2, before any request."""
    prompts = ["what is two and two", "name a prime", "spell cat"]
    (tmp_path / "prompts.txt").write_text("".join(p + "\n" for p in prompts))
    stub.configure(answers=json.dumps({prompts[0]: "four", prompts[1]: "seven", prompts[2]: "c a t"}))
    profile = write_profile(tmp_path, stub.url, "chat", tmp_path / "prompts.txt")
    run = accuracy(profile, tmp_path / "base")
    assert run.returncode == 0, run.stderr
    assert "3 prompts answered, kept to score the other variants' answers against" in run.stdout
    rows_, summary = read_accuracy(tmp_path / "base")  # type: ignore[misc]
    assert summary["references"] is None and summary["accuracy"] is None and rows_[1]["answer"] == "seven"
    stub.configure(answers=json.dumps({prompts[0]: "four", prompts[1]: "thirteen", prompts[2]: "c a t"}))
    cmd = [LLMCAP, "accuracy", str(profile), "--variant", "only", "--run-dir", str(tmp_path / "other")]
    run = subprocess.run([*cmd, "--baseline", str(tmp_path / "base")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    rows_, summary = read_accuracy(tmp_path / "other")  # type: ignore[misc]
    chrf = [r["scores"]["chrf"] for r in rows_]
    assert chrf[0] == chrf[2] == 1.0 and chrf[1] < 0.3 and [r["reference"] for r in rows_] == ["four", "seven", "c a t"]
    assert summary["references"] == "baseline" and summary["accuracy"] == pytest.approx(sum(chrf) / 3)
    assert "against the baseline's answers (3 prompts" in run.stdout
    stub.configure(fault="status", fault_status=500)  # a baseline whose every request failed leaves nothing to score
    assert accuracy(profile, tmp_path / "failed").returncode == 1
    requests = stub.stats()["requests"]
    run = subprocess.run([*cmd, "--baseline", str(tmp_path / "failed")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "every request of its quality pass failed: nothing to score against" in run.stderr
    run = subprocess.run([*cmd, "--baseline", str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].endswith(
        "no quality pass there (accuracy/answers.jsonl and summary.json)"
    )
    assert stub.stats()["requests"] == requests


def chrf_pass(run_dir: Path, scores: list[float] | None, against: str | None, number: int = 1) -> None:
    """A reference-free quality pass as llmcap writes it: unscored (None), or scored against `against`."""
    answers = [{"record": i + 1, "answer": f"a{i}", "error": None, "scores": {}} for i in range(4)]
    summary = {"n": 4, "errors": 0, "metric": "chrf", "references": None, "accuracy": None, "interval": None}
    if scores is not None:
        answers = [{**a, "scores": {"chrf": x}} for a, x in zip(answers, scores, strict=True)]
        interval = {"low": min(scores), "high": max(scores), "confidence": 0.95, "label": "bootstrap"}
        summary |= {"references": "baseline", "accuracy": sum(scores) / 4, "interval": interval, "threshold": 0.99}
        summary["against"] = against
    write_accuracy(run_dir, answers, summary, number)


def test_a_gate_only_against_the_answers_a_variant_was_scored_against(tmp_path):
    """bf16 answered first; fp8 and int4 were scored against bf16's answers. Compared with bf16 as the
    baseline, each gets a gate; compared with fp8 as the baseline, int4 gets none: its score is a
    distance to bf16, not to fp8."""
    bf16, fp8, int4 = (tmp_path / n for n in ("bf16", "fp8", "int4"))
    chrf_pass(bf16, None, None)
    chrf_pass(bf16, [1.0, 1.0, 1.0, 1.0], ".", number=2)
    chrf_pass(fp8, [1.0, 0.5, 1.0, 1.0], "../bf16")
    chrf_pass(int4, [1.0, 1.0, 1.0, 1.0], "../bf16")
    found = quality({"bf16": [str(bf16)], "fp8": [str(fp8)], "int4": [str(int4)]}, "bf16")
    assert found["bf16"]["accuracy"] == 1.0 and found["bf16"]["references"] == "baseline"  # its second pass
    assert found["fp8"]["relative"]["relative"] == pytest.approx(0.875) and found["fp8"]["gate"]["verdict"] == "fail"
    assert found["int4"]["gate"]["verdict"] == "pass"
    found = quality({"fp8": [str(fp8)], "int4": [str(int4)]}, "fp8")
    assert "gate" not in found["int4"] and "relative" not in found["int4"]


def test_tool_calls_scored_by_name_and_arguments(stub, tmp_path):
    source = SHARED / "smart_home"
    (tmp_path / "sh").mkdir()
    shutil.copy(source / "job_description.json", tmp_path / "sh" / "job_description.json")
    records = [json.loads(line) for line in (source / "test.jsonl").read_text().splitlines()][:2]
    dataset = tmp_path / "sh" / "test.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    last_user = [json.loads(r["question"])[-1]["content"] for r in records]
    wrong = json.loads(records[1]["answer"])
    key = sorted(wrong["parameters"])[0]
    wrong["parameters"][key] = "nowhere"
    stub.configure(answers=json.dumps({last_user[0]: records[0]["answer"], last_user[1]: json.dumps(wrong)}))
    run = accuracy(write_profile(tmp_path, stub.url, "smart_home", dataset), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    rows_, summary = read_accuracy(tmp_path / "run")  # type: ignore[misc]
    assert [r["scores"] for r in rows_] == [
        {"exact_match": 1.0, "function_name": 1.0},
        {"exact_match": 0.0, "function_name": 1.0},
    ]
    assert summary["metrics"] == {"exact_match": 0.5, "function_name": 1.0}


def test_a_server_failing_every_request_fails_the_pass(stub, tmp_path):
    stub.configure(fault="status", fault_status=500)
    dataset = tmp_path / "one.jsonl"
    dataset.write_text((REPO / "examples" / "text2sql" / "test.jsonl").read_text().splitlines()[0] + "\n")
    run = accuracy(write_profile(tmp_path, stub.url, "text2sql", dataset), tmp_path / "run")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "1 requests failed (scored as wrong)" in run.stdout
    rows_, _ = read_accuracy(tmp_path / "run")  # type: ignore[misc]
    assert rows_[0]["error"].startswith("HTTP 500") and rows_[0]["scores"] == {"exact_match": 0.0}


def test_a_reference_the_scorer_cannot_read_is_named_by_record(tmp_path):
    """A tool-calling set whose second reference is prose, not a call: one line, exit 2, no request."""
    source = SHARED / "smart_home"
    (tmp_path / "sh").mkdir()
    shutil.copy(source / "job_description.json", tmp_path / "sh" / "job_description.json")
    records = [json.loads(line) for line in (source / "test.jsonl").read_text().splitlines()][:2]
    records[1]["answer"] = "turn the lights on"
    dataset = tmp_path / "sh" / "test.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    unreachable = "http://127.0.0.1:9"  # nothing is sent: the records are checked first
    run = accuracy(write_profile(tmp_path, unreachable, "smart_home", dataset), tmp_path / "run")
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{dataset}: record 2: cannot score it" in lines[0], run.stderr


@pytest.mark.slow
def test_plan_scores_each_variant_beside_its_speed(stub, tmp_path):
    """Two variants on one external server: the baseline answers twice (its noise floor), the other
    once; the comparison shows accuracy, agreement and the gate beside the rates."""
    records = [json.loads(line) for line in (REPO / "examples" / "text2sql" / "test.jsonl").read_text().splitlines()]
    dataset = tmp_path / "four.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    right = {r["question"].split("Question:")[-1].strip(): r["answer"] for r in records[:2]}
    stub.configure(answers=json.dumps(right), chunks=4)
    profile = yaml.safe_load(write_profile(tmp_path, stub.url, "text2sql", dataset).read_text())
    profile["serving"]["variants"] = {"a": {}, "b": {}}
    profile["accuracy"]["threshold"] = 0.95
    profile.update(slo={"p95_ms": 500}, search={"start_rps": 20, "max_rps": 40, "growth": 2, "precision": 0.5})
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    plan_dir = tmp_path / "plan"
    cmd = [LLMCAP, "plan", str(tmp_path / "profile.yaml"), "--out", str(plan_dir), "--", "--step-seconds", "4"]
    cmd += ["--warmup-seconds", "1", "--confirm-seconds", "4", "--max-step-seconds", "8"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "a: answers: exact_match 50.0 % (2 of 4 prompts" in run.stdout
    assert "a: answers (again: how repeatable temperature 0 is)" in run.stdout
    assert read_accuracy(plan_dir / "a", 2) is not None and read_accuracy(plan_dir / "b", 2) is None
    quality = json.loads((plan_dir / "comparison.json").read_text())["quality"]
    assert quality["a"]["agreement"] == {"n": 4, "identical": 1.0, "same_score": 1.0}
    assert quality["b"]["relative"]["relative"] == 1.0 and quality["b"]["gate"]["verdict"] == "pass"
    assert quality["b"]["gate"]["threshold"] == 0.95  # the profile's
    assert quality["b"]["agreement"]["identical"] == 1.0
    # 2 of 4 right: the exact interval, 6.8-93.2 %, labelled by its guaranteed coverage
    exact = "exact_match 50.0 % (6.8 %–93.2 %, exact interval, covers at least 95 %)"
    assert exact in (plan_dir / "b" / "report.md").read_text()
    md = (plan_dir / "comparison.md").read_text()
    assert "## Answers" in md and "pass (sure: yes)" in md and "50.0 %" in md
