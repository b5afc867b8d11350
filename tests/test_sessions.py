"""Multi-turn sessions (--turns K): each turn carries the conversation so far; on the real engine the
prefix cache serves the earlier turns, and the report shows latency by turn beside the cache's share."""

import json

import numpy as np
import pytest

from llmcap.rundir import read_samples
from tests.conftest import run_locust
from tests.engine import needs_engine
from tests.test_prefix_cache import counters


@pytest.mark.realtime
def test_turns_carry_the_conversation_at_the_rate_of_requests(stub, tmp_path):
    stub.configure(first_delay_ms=20, chunks=5)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--turns",
        "3",
        "--think-seconds",
        "0.2",
        "--rps",
        "30",
        "--duration",
        "20",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    samples, _ = read_samples(tmp_path / "run")
    turns = np.bincount(samples["turn"], minlength=3)
    print(f"requests by turn: {turns.tolist()}, {len(samples) / 20:.1f} req/s")
    assert turns[0] > 0 and turns[1] > 0.8 * turns[0] and turns[2] > 0.8 * turns[1]
    assert len(samples) / 20 == pytest.approx(30, rel=0.2)  # the rate is of requests: 10 sessions a second
    # a turn's prompt is the previous one, its answer, and a new question: the stub counts characters
    means = [samples["prompt_tokens"][samples["turn"] == t].mean() for t in range(3)]
    assert means[0] < means[1] < means[2], means
    roles = [m["role"] for m in stub.stats()["last_body"]["messages"]]
    assert roles[-1] == "user" and (len(roles) == 2 or roles[-3:] == ["user", "assistant", "user"]), roles
    # a later turn is due a think time after the answer: its latency counts from then, and the
    # stub answers in ~20 ms, so it is short (a turn timed from the session's start would not be)
    later = samples[samples["turn"] > 0]
    assert np.percentile((later["end_s"] - later["scheduled_s"]) * 1000, 50) < 100
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Sessions" in report and "Conversations of 3 turns" in report


def test_sessions_and_a_closed_loop_are_not_mixed(stub, tmp_path):
    run = run_locust("loadtest/text2sql.py", stub.url, "--turns", "2", "--concurrency", "4", "--run-dir", str(tmp_path))
    assert run.returncode == 2 and "sessions (--turns) need a rate" in run.stderr


@needs_engine
@pytest.mark.engine
@pytest.mark.slow
def test_later_turns_are_served_from_the_prefix_cache(cpu_server, tmp_path):
    before = counters(cpu_server.url)
    run = run_locust(
        "loadtest/text2sql.py",
        cpu_server.url,
        "--turns",
        "3",
        "--think-seconds",
        "0.3",
        "--rps",
        "3",
        "--duration",
        "30",
        "--max-tokens",
        "32",
        "--run-dir",
        str(tmp_path / "run"),
        timeout_s=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    after = counters(cpu_server.url)
    hits0, queries0 = before["vllm:prefix_cache_hits_total"], before["vllm:prefix_cache_queries_total"]
    hits, queries = after["vllm:prefix_cache_hits_total"], after["vllm:prefix_cache_queries_total"]
    capacity = json.loads((tmp_path / "run" / "capacity.json").read_text())
    by_turn = capacity["sessions"]["by_turn"]
    print(
        f"prefix cache: {hits - hits0:.0f} of {queries - queries0:.0f} prompt tokens; by turn: "
        + ", ".join(f"turn {t['turn']} {t['requests']} requests, {t['mean_prompt_tokens']:.0f} tokens" for t in by_turn)
    )
    assert [t["turn"] for t in by_turn] == [1, 2, 3]
    tokens = [t["mean_prompt_tokens"] for t in by_turn]
    assert tokens[0] < tokens[1] < tokens[2]
    # each later turn's prompt begins with the whole previous prompt: at least the first turn's
    # tokens, rounded down to whole blocks, come from the cache on every later turn
    later = sum(t["requests"] for t in by_turn[1:])
    assert hits - hits0 >= 0.5 * later * tokens[0]
    rate = capacity["sessions"]["prefix_cache_hit_rate"]
    assert rate is not None and rate > 0.3
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Sessions" in report and f"{rate * 100:.1f} %" in report
