"""Engines other than vLLM: `transformers serve`'s dialect (against the stub speaking it) and an
external server named by URL (the stub, through `llmcap plan`)."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmcap.profile import RequestSettings, load_profile
from loadtest.bodies import build_bodies, with_marker
from loadtest.client import ChatClient
from loadtest.datasets import Prompts
from serving.engines import build_command
from tests.conftest import REPO, run_locust, start_stub, stop_process

LLMCAP = str(Path(sys.executable).with_name("llmcap"))
TOOL_PROMPT = {"messages": [{"role": "user", "content": "lights on"}], "tools": [{"type": "function"}]}


def prompts(*requests) -> Prompts:
    return Prompts(requests=list(requests), hashes=[0] * len(requests), order=list(range(len(requests))))


def body(engine: str, request: RequestSettings, prompt: dict | None = None) -> dict:
    return json.loads(with_marker(build_bodies(prompts(prompt or TOOL_PROMPT), "m", request, engine)[0], 1, 1))


def test_each_request_is_marked_after_what_every_prompt_shares():
    system = {"role": "system", "content": "You answer in SQL."}
    two = prompts(
        {"messages": [system, {"role": "user", "content": "q1"}]},
        {"messages": [system, {"role": "user", "content": "q2"}]},
    )
    first = build_bodies(two, "m", RequestSettings())[0]
    sent = [json.loads(with_marker(first, 0x4D2, seq))["messages"] for seq in (1, 2)]
    assert sent[0][0] == system and sent[0][1]["content"] == "[4d2.1] q1"  # the shared system prompt untouched
    assert sent[1][1]["content"] == "[4d2.2] q1"  # the same prompt again: a different request
    plain = build_bodies(two, "m", RequestSettings(unique_marker=False))[0]
    assert plain[1] == b"" and with_marker(plain, 1, 1) == plain[0]
    assert json.loads(plain[0])["messages"][1]["content"] == "q1"
    # a vLLM-only switch for the chat template, never sent to transformers serve
    thinking_off = RequestSettings(chat_template_kwargs={"enable_thinking": False})
    for engine, sent_kwargs in (("vllm", {"enable_thinking": False}), ("transformers", None)):
        body = json.loads(with_marker(build_bodies(two, "m", thinking_off, engine)[0], 1, 1))
        assert body.get("chat_template_kwargs") == sent_kwargs


def test_each_engine_gets_the_fields_it_takes():
    request = RequestSettings(max_tokens=16, ignore_eos=True, temperature=0.0, tool_choice="required")
    vllm = body("vllm", request)
    assert vllm["ignore_eos"] is True and vllm["stream_options"] == {"include_usage": True}
    assert vllm["tool_choice"] == "required"
    tf = body("transformers", request, {**TOOL_PROMPT, "tool_choice": "auto"})  # a task's own choice too
    assert not {"ignore_eos", "stream_options", "tool_choice", "min_tokens"} & set(tf)
    assert json.loads(tf["generation_config"]) == {"min_new_tokens": 16, "max_new_tokens": 16}
    assert tf["max_tokens"] == 16 and tf["stream"] is True and tf["tools"] == TOOL_PROMPT["tools"]
    floor = body("transformers", RequestSettings(max_tokens=16, min_tokens=4))
    assert json.loads(floor["generation_config"])["min_new_tokens"] == 4
    assert "generation_config" not in body("transformers", RequestSettings(max_tokens=16))


def test_transformers_dialect_end_to_end_on_the_stub(stub):
    stub.configure(dialect="transformers", chunks=5)
    request = RequestSettings(max_tokens=12, ignore_eos=True)
    client = ChatClient(stub.url)
    # vLLM's fields are refused outright, which is why the dialect exists
    refused = client.stream(with_marker(build_bodies(prompts(TOOL_PROMPT), "m", request, "vllm")[0], 1, 1))
    assert refused.status == 422
    # its stream ends after the usage chunk, with no [DONE]: complete, all 12 tokens counted
    r = client.stream(with_marker(build_bodies(prompts(TOOL_PROMPT), "m", request, "transformers")[0], 1, 1))
    assert r.error == 0, r.message
    assert r.completion_tokens == 12 and len(r.itl_ms) == 11
    # cut before its usage chunk, the same stream is still an error
    stub.configure(fault="cut", cut_after_chunks=3)
    cut = client.stream(with_marker(build_bodies(prompts(TOOL_PROMPT), "m", request, "transformers")[0], 1, 1))
    assert cut.error != 0


def test_locust_with_engine_transformers_on_the_stub(stub, tmp_path):
    stub.configure(dialect="transformers", chunks=4)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--engine",
        "transformers",
        "--model",
        "stub-model",
        "--rps",
        "10",
        "--duration",
        "4",
        "--max-tokens",
        "8",
        "--ignore-eos",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    step = json.loads((tmp_path / "run" / "result.json").read_text())["steps"][0]
    assert step["error_rate"] == 0 and step["succeeded"] >= 20 and step["mean_completion_tokens"] == 8
    assert not (tmp_path / "run" / "telemetry" / "vllm.jsonl").exists()  # it has no /metrics to read


def test_engine_transformers_needs_a_model_name(stub, tmp_path):
    stub.configure(dialect="transformers")
    run = run_locust("loadtest/text2sql.py", stub.url, "--engine", "transformers", "--rps", "2", "--duration", "2")
    assert run.returncode == 2 and "name it with --model" in run.stderr


def write_profile(path: Path, **serving) -> Path:
    data = {
        "name": "ext",
        "model": {"id": "stub-model"},
        "serving": {"variants": {"only": {}}, **serving},
        "slo": {"p95_ms": 500},
        "search": {"start_rps": 20, "max_rps": 40, "growth": 2, "precision": 0.5},
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_plan_compares_two_servers_you_run_from_their_urls_alone(stub, tmp_path):
    """A profile of URLs, a prompt file and an SLO, nothing else: no model id (each server's
    /v1/models says), no name (the file's). Nothing is launched or stopped; each variant's search
    runs against its URL and the record says so; the server with four times the slots is found
    faster, with significance (capacities: 4 slots and 1 of 25 ms, 160 and 40 req/s). The prompts
    carry no reference answers, so the quality pass scores the slow server's answers against the
    fast one's: it changed half of them, and the gate fails it."""
    prompts = [f"prompt {i}: name a colour" for i in range(8)]
    answers = {p: f"The colour is number {i}, a deep shade of blue." for i, p in enumerate(prompts)}
    changed = {
        p: "Certainly not: I would rather talk about trains." if i % 2 else a
        for i, (p, a) in enumerate(answers.items())
    }
    stub.configure(slots=4, first_delay_ms=25, chunks=1, answers=json.dumps(answers))
    slow = start_stub("--slots", "1", "--first-delay-ms", "25", "--chunks", "1", "--answers", json.dumps(changed))
    (tmp_path / "prompts.txt").write_text("".join(p + "\n" for p in prompts))
    profile = tmp_path / "mine.yaml"
    servers = {"fast": {"url": stub.url}, "slow": {"url": slow.url}}
    # a doubling apart tells them: 30, 60, 120 pass and 240 fails on the fast one; 30 passes, 60 fails on the slow
    search = {"start_rps": 30, "growth": 2, "precision": 1.0, "step_seconds": 3, "max_step_seconds": 6}
    search |= {"warmup_seconds": 1, "confirm_seconds": 3}
    profile.write_text(
        yaml.safe_dump(
            {
                "dataset": {"task": "chat", "path": "prompts.txt"},
                "serving": {"engine": "external", "variants": servers},
                "slo": {"p95_ms": 250},
                "search": search,
            }
        )
    )
    plan_dir = tmp_path / "plan"
    try:
        run = subprocess.run(
            [LLMCAP, "plan", str(profile), "--out", str(plan_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    finally:
        stop_process(slow.proc)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for variant, server in (("fast", stub), ("slow", slow)):
        assert f"the running server at {server.url}" in run.stdout
        config = json.loads((plan_dir / variant / "server" / "config.json").read_text())
        assert config["engine"] == "external" and config["command"] is None and config["pid"] is None
        assert "served by external" in (plan_dir / variant / "report.md").read_text()
    comparison = json.loads((plan_dir / "comparison.json").read_text())
    by_name = {v["variant"]: v for v in comparison["variants"]}
    assert by_name["fast"]["max_sustained_rps"] >= 2 * by_name["slow"]["max_sustained_rps"], by_name
    change = by_name["slow"]["max_sustained_rps_change"]
    assert change["verdict"] == "significant" and change["high"] < 0, change
    fast, slow_q = comparison["quality"]["fast"], comparison["quality"]["slow"]
    assert fast["references"] == "baseline" and fast["accuracy"] == 1.0  # its second pass, against its first
    assert fast["agreement"]["identical"] == 1.0 and fast["agreement"]["n"] == 8
    assert slow_q["agreement"]["identical"] == 0.5 and slow_q["relative"]["relative"] < 0.8
    assert slow_q["gate"]["verdict"] == "fail" and slow_q["gate"]["sure"], slow_q
    assert "fast: answers: 8 prompts answered, kept to score the other variants' answers against" in run.stdout
    assert "scored by chrf against the baseline's answer" in (plan_dir / "comparison.md").read_text()
    check_links(plan_dir, ["fast/report", "slow/report"])


def check_links(plan_dir: Path, reports: list[str]) -> None:
    """Index, comparison and each run's report link to one another, in both renderings, and every
    link resolves."""
    pages = ["index", "comparison", *reports]
    for page in pages:
        for suffix, pattern in ((".html", r'href="([^"]+)"'), (".md", r"\]\(([^)]+\.md)\)")):
            path = plan_dir / (page + suffix)
            targets = {(path.parent / t).resolve() for t in re.findall(pattern, path.read_text())}
            assert all(t.is_file() for t in targets), (path, targets)
            # the plan's pages link to every other page; a run's report back to the plan's two
            linked = pages if page in ("index", "comparison") else ["index", "comparison"]
            wanted = {(plan_dir / (p + suffix)).resolve() for p in linked if p != page}
            assert wanted <= targets, (path, wanted - targets)


def test_engine_settings_are_checked(tmp_path):
    no_url = write_profile(tmp_path / "a.yaml", engine="external")
    run = subprocess.run([LLMCAP, "plan", str(no_url)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "serving.url: required with engine external" in run.stderr
    bad_url = write_profile(tmp_path / "b.yaml", engine="external", url="stub:8000")
    run = subprocess.run([LLMCAP, "plan", str(bad_url)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "serving.url: expected http://HOST:PORT" in run.stderr
    vllm_only = write_profile(tmp_path / "c.yaml", engine="transformers", max_num_seqs=8)
    run = subprocess.run(
        [LLMCAP, "serve", str(vllm_only), "--variant", "only", "--dry-run"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "serving.max_num_seqs: not a setting of the transformers engine" in run.stderr


def test_transformers_command_line():
    profile = load_profile(REPO / "profiles" / "cpu-tiny-transformers.yaml")
    cmd = build_command(profile, "fp32", port=9100)
    assert cmd[:4] == [profile.serving.python, "-c", "from transformers.cli.transformers import main; main()", "serve"]
    assert cmd[-1] == profile.model.id  # the model it pins every request to
    args = cmd[4:-1]
    flags = {a: b for a, b in zip(args, args[1:] + [""], strict=True) if a.startswith("--") and not b.startswith("--")}
    assert flags["--device"] == "cpu" and flags["--dtype"] == "float32" and flags["--port"] == "9100"
    assert "--continuous-batching" in cmd
    assert flags["--cb-max-memory-percent"] == "0.05"  # not 90 % of the machine's RAM (OOM in CI)


FAKE_ENGINE = """#!/usr/bin/env bash
# stands in for `python -c ... serve ... --port P MODEL`: up, but its worker died (as FP8 without kernels)
while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done
echo "ImportError: finegrained-fp8 kernel unavailable: kernels is not installed"
exec {python} -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503); self.end_headers()
http.server.HTTPServer(('127.0.0.1', $port), H).serve_forever()
"
"""


def test_a_server_up_but_failing_is_reported_at_once(tmp_path):
    """A server that answers /health with 503 for good and has an exception in its log fails its start
    within seconds, with the log's reason (it waited out the whole startup timeout on the GPU check)."""
    from serving.launcher import Server, ServerError
    from tests.conftest import free_port

    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_ENGINE.format(python=sys.executable))
    fake.chmod(0o755)
    profile = load_profile(
        write_profile(tmp_path / "p.yaml", engine="transformers", python=str(fake), startup_timeout_s=120)
    )
    server = Server(profile, "only", tmp_path / "run", port=free_port())
    t0 = time.time()
    with pytest.raises(ServerError, match="up but failing \\(HTTP 503\\): ImportError: finegrained-fp8"):
        server.start()
    assert time.time() - t0 < 20
    assert server.proc is not None and server.proc.poll() is not None  # stopped
