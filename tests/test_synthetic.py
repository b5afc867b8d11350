"""Synthetic prompts (loadtest/synthetic.py): lengths drawn from a distribution, built with the served
model's own tokenizer, as the server counts them."""

import random
import statistics

import numpy as np
import pytest

from llmcap.rundir import read_samples, read_synthetic_lengths
from loadtest.synthetic_prompts import parse_lengths
from tests.conftest import run_locust
from tests.engine import needs_engine


@pytest.mark.parametrize(
    "text,kind,mean",
    [
        ("256", "fixed", 256),
        ("fixed:64", "fixed", 64),
        ("uniform:100,300", "uniform", 200),
        ("normal:512,64", "normal", 512),
        ("list:10,20,60", "list", 30),
    ],
)
def test_lengths_parse_and_draw_their_mean(text, kind, mean):
    lengths = parse_lengths(text)
    assert lengths.kind == kind and lengths.mean == mean
    rng = random.Random(0)
    draws = [lengths.draw(rng) for _ in range(4000)]
    assert statistics.mean(draws) == pytest.approx(mean, rel=0.02)
    assert all(d >= 1 for d in draws)


@pytest.mark.parametrize(
    "text", ["", "abc", "normal:5", "uniform:9,3", "fixed:0", "poisson:4", "list:", "normal:10,-1"]
)
def test_a_bad_length_says_what_it_takes(text):
    with pytest.raises(ValueError, match="expected fixed:N, uniform:LOW,HIGH, normal:MEAN,SD or list:A,B"):
        parse_lengths(text)


def test_a_bad_length_is_named_by_its_field(stub, tmp_path):
    run = run_locust("loadtest/synthetic.py", stub.url, "--input-tokens", "normal:5", "--run-dir", str(tmp_path))
    assert run.returncode == 2
    assert "synthetic.input_tokens: expected fixed:N" in run.stderr


def test_a_server_without_a_tokenizer_endpoint_is_named(stub, tmp_path):
    run = run_locust("loadtest/synthetic.py", stub.url, "--run-dir", str(tmp_path))
    assert run.returncode == 2
    assert "/tokenize: synthetic prompts need the server's tokenizer" in run.stderr


@needs_engine
@pytest.mark.engine
@pytest.mark.slow
def test_the_server_counts_the_drawn_lengths(cpu_server, tmp_path):
    """On the real CPU engine (the tiny model's tokenizer): the prompt tokens vLLM reports in `usage`
    have the requested mean within 2 % and about its spread; every completion has exactly its drawn
    length; a shared prefix is counted in and served from the prefix cache."""
    run = run_locust(
        "loadtest/synthetic.py",
        cpu_server.url,
        "--input-tokens",
        "normal:200,40",
        "--output-tokens",
        "uniform:8,24",
        "--synthetic-prompts",
        "200",
        "--shared-prefix-tokens",
        "64",
        "--rps",
        "4",
        "--duration",
        "30",
        "--run-dir",
        str(tmp_path / "run"),
        timeout_s=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    samples, _ = read_samples(tmp_path / "run")
    ok = samples[samples["error"] == 0]
    prompt = ok["prompt_tokens"].astype(float)
    completion = ok["completion_tokens"]
    print(
        f"{len(ok)} requests: prompt tokens mean {prompt.mean():.1f} sd {prompt.std():.1f} (asked 200, 40); "
        f"completion {completion.min()}-{completion.max()}, mean {completion.mean():.1f} (asked uniform 8-24)"
    )
    assert len(ok) >= 80
    # every prompt was built to its drawn length, as the server counts it (chat template, shared
    # prefix and the per-request marker included; the marker's length varies by a token or so)
    drawn = read_synthetic_lengths(tmp_path / "run")
    asked_in = np.array([drawn[h]["input_tokens"] for h in ok["prompt_hash"]], dtype=float)
    asked_out = np.array([drawn[h]["output_tokens"] for h in ok["prompt_hash"]])
    off = np.abs(prompt - asked_in)
    print(
        f"served vs drawn: {np.mean(off == 0):.0%} exact, {np.mean(off <= 2):.0%} within 2 tokens, max {off.max():.0f}"
    )
    assert np.mean(off <= 2) >= 0.95
    assert (completion == asked_out).all()
    # and the drawn lengths follow the distribution asked for: all 200 prompts, mean within 2 %
    every = np.array([row["input_tokens"] for row in drawn.values()], dtype=float)
    print(f"drawn over all {len(every)} prompts: mean {every.mean():.1f}, sd {every.std():.1f}")
    assert len(every) == 200 and every.mean() == pytest.approx(200, rel=0.02) and 30 <= every.std() <= 50
    assert prompt.mean() == pytest.approx(asked_in.mean(), rel=0.01)
    assert completion.min() >= 8 and completion.max() <= 24
    assert prompt.min() > 64  # the shared prefix counted in
