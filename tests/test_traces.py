"""Arrivals from a trace (--arrival trace --trace FILE): the formats read, bad rows named, the shape
played at any mean rate, followed by what the server sees, and searched over its scale."""

import json
import random

import numpy as np
import pytest

from llmcap.errors import BadInput
from llmcap.traces import read_arrivals
from loadtest.arrivals import trace_gaps
from tests.conftest import REPO, run_locust

BURSTS = REPO / "examples" / "traces" / "bursts-per-second.csv"
SPEEDUP = 4  # the trace played in 30 s: shape, not duration, is what is checked


def arrival_times(trace, total_rps: float, n: int, share: float = 1.0, seed: int = 0) -> np.ndarray:
    gaps = trace_gaps(trace, total_rps, share, random.Random(seed))
    return np.cumsum([next(gaps) for _ in range(n)])


def test_arrival_times_in_csv_jsonl_and_the_azure_format(tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("timestamp,input_tokens\n100.0,5\n100.5,7\n100.6,1\n102.0,3\n")
    t = read_arrivals(csv_file)
    assert t.times_s == pytest.approx([0, 0.5, 0.6, 2.0])
    assert t.duration_s == pytest.approx(2.0 + 2.0 / 3)  # one mean gap after the last: the loop keeps the rate
    assert t.mean_rps == pytest.approx(1.5)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"timestamp_ms": 27482, "input_length": 6955}\n\n{"timestamp_ms": 27482}\n{"timestamp_ms": 30000}\n'
    )
    assert read_arrivals(jsonl).times_s == pytest.approx([0, 0, 2.518])
    # the Azure LLM inference trace's columns (three rows written here, not their data): 7 fractional digits
    azure = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    azure.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:51.0000000,879,34\n"
    )
    assert read_arrivals(azure).times_s == pytest.approx([0, 4.314579, 4.31941], abs=1e-5)


def test_counts_per_second_bare_csv_or_jsonl(tmp_path):
    for name, text in [
        ("bare.txt", "3\n0\n5\n"),
        ("c.csv", "second,requests\n0,3\n1,0\n2,5\n"),
        ("c.jsonl", '{"count": 3}\n{"count": 0}\n{"count": 5}\n'),
    ]:
        (tmp_path / name).write_text(text)
        t = read_arrivals(tmp_path / name)
        assert t.counts == [3, 0, 5] and t.duration_s == 3 and t.mean_rps == pytest.approx(8 / 3)


@pytest.mark.parametrize(
    "text,error",
    [
        ("timestamp\n1.0\nsoon\n", r"t.txt:3: timestamp: expected a time, got 'soon'"),
        ('{"timestamp": 1}\n{"timestamp": 2\n', r"t.txt:2: not a JSON object"),
        ("requests\n4\n-1\n", r"t.txt:3: expected a count of requests \(0 or more\), got '-1'"),
        ("0\n0\n", r"t.txt: no requests in the trace"),
        ("timestamp\n5\n", r"t.txt: a trace of arrival times needs at least two distinct times"),
        ("when,who\n1,2\n", r"t.txt:1: expected a 'requests' column"),
    ],
)
def test_a_bad_row_is_named(tmp_path, text, error):
    (tmp_path / "t.txt").write_text(text)
    with pytest.raises(BadInput, match=error):
        read_arrivals(tmp_path / "t.txt")


def test_recorded_times_are_replayed_sped_up_in_a_loop(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp\n0\n0.5\n0.6\n2.0\n")
    trace = read_arrivals(tmp_path / "t.csv")
    at = arrival_times(trace, 3.0, 8)  # twice the trace's 1.5 req/s: every gap halved
    period = trace.duration_s / 2
    assert at == pytest.approx([0, 0.25, 0.3, 1.0, period, period + 0.25, period + 0.3, period + 1.0])


def test_counts_are_a_poisson_process_with_the_traces_rate_in_each_bin():
    trace = read_arrivals(BURSTS)
    counts = np.array(trace.counts)
    speedup, periods = 3.0, 40
    total_rps = trace.mean_rps * speedup
    for share in (1.0, 0.5):
        at = arrival_times(trace, total_rps, int(trace.requests * periods * share * 1.02), share=share)
        period_s = trace.duration_s / speedup
        at = at[at < periods * period_s]
        # the count in each of the trace's seconds (played in 1/3 s), summed over the periods
        seen = np.bincount(((at % period_s) / (1 / speedup)).astype(int), minlength=len(counts))
        expected = counts * periods * share
        chi2 = float((((seen - expected) ** 2) / expected)[expected > 0].sum())
        print(f"share {share}: chi-square {chi2:.0f} over {len(counts)} bins")
        assert chi2 < 180  # 120 degrees of freedom: the 99.9th percentile is 174
    # the shape is the trace's, not a flat rate's: the same counts against their mean are far off
    flat = np.full(len(counts), counts.mean() * periods)
    assert float((((seen * 2 - flat) ** 2) / flat).sum()) > 1000


@pytest.mark.realtime
def test_the_server_sees_the_traces_shape(stub, tmp_path):
    """Arrivals at the stub per quarter second follow the trace played four times as fast, within
    Poisson noise."""
    trace = read_arrivals(BURSTS)
    run = run_locust(
        "loadtest/text2sql.py",
        stub.url,
        "--rps",
        f"{SPEEDUP * trace.mean_rps}",
        "--duration",
        f"{len(trace.counts) / SPEEDUP:g}",
        "--arrival",
        "trace",
        "--trace",
        str(BURSTS),
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["arrival"] == "trace" and result["arrival_trace"]["file"] == BURSTS.name
    start = result["steps"][0]["start"]
    arrivals = np.array(stub.stats()["arrivals"]) - start
    bins = len(trace.counts)  # one per trace second, each 1/SPEEDUP s long
    inside = arrivals[(arrivals >= 0) & (arrivals < bins / SPEEDUP)]
    seen = np.bincount((inside * SPEEDUP).astype(int), minlength=bins)
    expected = np.array(trace.counts)
    chi2 = float((((seen - expected) ** 2) / np.maximum(expected, 1)).sum())
    print(f"server-side counts per 1/{SPEEDUP} s against the trace's per second: chi-square {chi2:.0f}, {bins} bins")
    assert bins == 120 and chi2 < 180  # 99.9th percentile of 120 degrees of freedom: 174
    spike = seen[50:53].mean() / seen[:15].mean()  # the 3x spike of trace seconds 50-53
    assert spike > 2, spike
