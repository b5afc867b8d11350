"""The prefix cache on, as deployed, on the real vLLM CPU engine: a replay of the dataset is served
from the cache only as far as every request shares its prompt (system prompt, chat template header),
in whole blocks, never a repeated prompt whole; the report shows the share."""

import json
import urllib.request

import pytest

from llmcap.rundir import read_samples
from loadtest.bodies import build_bodies, with_marker
from loadtest.datasets import load_prompts
from loadtest.tasks import TASKS
from reports.report import write_report
from tests.conftest import CPU_SERVER_BLOCK, run_locust
from tests.engine import needs_engine

pytestmark = pytest.mark.engine

BLOCK = CPU_SERVER_BLOCK  # the shared server's block size (tests/conftest.py: cpu_server)


def counters(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
            if line.startswith(name + "{"):
                out[name] = float(line.rsplit(" ", 1)[1])
    return out


def tokens(url: str, model: str, body: bytes) -> list[int]:
    request = json.loads(body)
    ask = {"model": model, "messages": request["messages"]}
    req = urllib.request.Request(url + "/tokenize", json.dumps(ask).encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())["tokens"]


def common(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@needs_engine
def test_a_replay_hits_the_cache_only_for_the_shared_prefix(cpu_server, tmp_path):
    from tests.engine import cpu_profile

    profile = cpu_profile()
    assert profile.serving.enable_prefix_caching is None  # vLLM's default: on
    url, model = cpu_server.url, cpu_server.model_name
    assert model is not None
    # what the cache can share: the tokens before the marker (the marker's own "[" and the
    # process id may merge with them, so allow a few), and a whole prompt for comparison
    prompts = load_prompts(TASKS["text2sql"])
    bodies = build_bodies(prompts, model, profile.request)
    first, other = (tokens(url, model, with_marker(bodies[0], 0x1234, seq)) for seq in (0x1, 0x2))
    mixed = tokens(url, model, with_marker(bodies[1], 0x9876, 0x3))
    shared = common(first, mixed)
    assert shared < common(first, other) <= shared + 6 < len(first) - BLOCK  # the question is unshared
    before = counters(url)
    run_dir = tmp_path / "run"
    run = run_locust(
        "loadtest/text2sql.py",
        url,
        "--llmcap-profile",
        str(profile.file),
        "--model",
        model,
        "--rps",
        "3",
        "--duration",
        "20",
        "--run-dir",
        str(run_dir),
        "--metrics-url",
        url + "/metrics",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    after = counters(url)
    samples, _ = read_samples(run_dir)
    n = len(samples)
    assert n >= 40 and (samples["error"] == 0).all()  # ~60: each of the 24 prompts sent twice or more
    queried = after["vllm:prefix_cache_queries_total"] - before["vllm:prefix_cache_queries_total"]
    hit = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    assert queried == samples["prompt_tokens"].sum()  # every prompt token was looked up once
    # every request but the first finds the shared prefix, in whole blocks, and nothing more (the
    # first too, when an earlier test on this server sent a text2sql prompt)
    low, high = (shared // BLOCK) * BLOCK, ((shared + 6) // BLOCK) * BLOCK
    print(f"{n} requests, {queried:.0f} prompt tokens, {hit:.0f} from the cache; shared prefix {shared} tokens")
    assert (n - 1) * low <= hit <= n * high, (hit, n, shared)
    whole = ((samples["prompt_tokens"] - 1) // BLOCK * BLOCK).sum()  # a repeated prompt served whole
    assert hit < 0.95 * whole, (hit, whole)
    # the step's share, from the telemetry the report reads, agrees with the counters
    cap = write_report(run_dir)
    step_rate = json.loads((run_dir / "result.json").read_text())["steps"][0]["server"]["prefix_cache_hit_rate"]
    assert step_rate == pytest.approx(hit / queried, abs=0.05)
    assert "prefix cache" in (run_dir / "report.md").read_text()
    assert cap["per_step"][0]["server"]["prefix_cache_hit_rate"] == step_rate
