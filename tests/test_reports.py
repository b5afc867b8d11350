"""The capacity report: cost formula, FLOPs, headline numbers from a fixture run, safe HTML."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from llmcap.confidence import ESTIMATE_INTERVAL_COVERAGE, t_quantile
from llmcap.confidence import SEARCH_INTERVAL_COVERAGE as COVERAGE
from llmcap.rundir import RESULT_SCHEMA_VERSION
from reports.capacity import capacity
from reports.compare import write_comparison
from reports.cost import hosted_usd_per_million_requests, usd_per_million_requests, usd_per_million_tokens
from reports.flops import HARDWARE, KNOWN, bandwidth_limit, compute_limit, flops_per_request, kv_bytes_per_token
from reports.report import write_report
from tests.browser import CHROMIUM, FLAGS, needs_browser

GIB = 2**30


def test_cost_reproduces_the_reference_run():
    assert round(usd_per_million_requests(222, 2.40), 2) == 3.00
    assert round(usd_per_million_requests(222, 2.40, utilization=0.1), 2) == 30.03
    assert usd_per_million_requests(100, 2.0, gpus=2, utilization=0.5) == pytest.approx(
        2 * 2.0 / (100 * 3600 * 0.5) * 1e6
    )
    assert usd_per_million_tokens(222, 300, 2.40) == pytest.approx(usd_per_million_requests(222, 2.40) / 300)
    # 300 prompt + 40 completion tokens at $1 / $5 per million: $300 + $200 per million requests
    assert hosted_usd_per_million_requests(300, 40, 1.0, 5.0) == pytest.approx(500.0)
    with pytest.raises(ValueError):
        usd_per_million_requests(0, 2.4)
    with pytest.raises(ValueError):
        usd_per_million_requests(10, 2.4, utilization=1.5)


def test_qwen3_4b_flops_by_hand():
    arch = KNOWN["qwen3-4b"]
    # per layer: q 2560x4096, k and v 2560x1024 each, o 4096x2560, MLP 3 x 2560x9728
    per_layer = 2560 * 4096 + 2 * 2560 * 1024 + 4096 * 2560 + 3 * 2560 * 9728
    assert per_layer == 100_925_440
    lm_head = 151936 * 2560
    assert arch.matmul_params == 36 * per_layer + lm_head == 4_022_272_000
    assert 4.00e9 < arch.total_params < 4.03e9  # "Qwen3-4B": 4.02 B parameters
    # text2sql's shape: 314 prompt tokens, 36 generated. The layers see 314 + 35 tokens (the last
    # sampled token is never fed back); the LM head runs 36 times, not 350 (no logits per prompt token)
    p, c = 314, 36
    linear = 2 * 36 * per_layer * (314 + 35)
    head = 2 * lm_head * 36
    pairs = 314 * 315 / 2 + 35 * 314 + 35 * 36 / 2
    attention = 4 * 36 * 32 * 128 * pairs
    assert flops_per_request(arch, p, c) == pytest.approx(linear + head + attention)
    assert flops_per_request(arch, p, c) == pytest.approx(2.600e12, rel=0.001)
    # the old count charged the head for every prompt token too: ~9 % more
    old = 2 * 4_022_272_000 * (p + c) + attention
    assert old / (linear + head + attention) == pytest.approx(1.09, abs=0.01)
    hw = HARDWARE["H100-SXM"]
    bf16 = compute_limit(arch, hw, "bf16", 1, p, c)
    assert bf16 is not None and bf16["compute_ceiling_rps"] == pytest.approx(989.4e12 / (linear + head + attention))
    # FP8: the linear layers at 1978.9 TFLOPS, the head and attention still at 989.4
    fp8 = compute_limit(arch, hw, "fp8", 1, p, c)
    assert fp8 is not None
    assert fp8["compute_ceiling_rps"] == pytest.approx(1 / (linear / 1978.9e12 + (head + attention) / 989.4e12))
    # the head and attention are ~1 % of the FLOPs here: 1.95x, not the peak's 2x
    assert fp8["compute_ceiling_rps"] / bf16["compute_ceiling_rps"] == pytest.approx(1.952, abs=0.003)
    # BF16 weights of Qwen3-4B ~7.5 GiB (the reference run's 7.6 GiB); FP8 linear layers ~44 % less
    bf16_w, fp8_w = arch.weight_bytes(16) / GIB, arch.weight_bytes(8) / GIB
    assert 7.4 < bf16_w < 7.6 and 0.40 < 1 - fp8_w / bf16_w < 0.48


def test_bandwidth_ceiling_by_hand():
    arch = KNOWN["qwen3-4b"]
    # KV per token: K and V, 36 layers x 8 KV heads x 128 dims x 2 bytes = 147,456 bytes
    assert kv_bytes_per_token(arch, 16) == 147_456 and kv_bytes_per_token(arch, 8) == 73_728
    weights = arch.weight_bytes(16)
    # a batch of 64 at 314/36 tokens: each step reads the weights and 64 x (314 + 18) tokens of KV
    step_bytes = weights + 64 * 332 * 147_456
    step_s = step_bytes / 3.35e12
    limit = bandwidth_limit(arch, HARDWARE["H100-SXM"], 1, weights, 16, 314, 36, batch=64)
    assert limit is not None
    assert limit["gb_per_decode_step"] == pytest.approx(step_bytes / 1e9)
    assert limit["bandwidth_ceiling_rps"] == pytest.approx(64 / (36 * step_s))
    # weights 8.05 GB + KV 3.13 GB a step: 3.34 ms, 36 steps a request, 64 at once: ~533 req/s
    assert limit["bandwidth_ceiling_rps"] == pytest.approx(532.8, abs=0.5)
    # one request alone: the weights dominate, ~11 req/s
    alone = bandwidth_limit(arch, HARDWARE["H100-SXM"], 1, weights, 16, 314, 36, batch=1)
    assert alone is not None and alone["bandwidth_ceiling_rps"] == pytest.approx(
        1 / (36 * (weights + 332 * 147_456) / 3.35e12)
    )
    # no datasheet peak (the CPU demo): no ceiling at all
    assert compute_limit(arch, HARDWARE["CPU-2core"], "bf16", 1, 314, 36) is None
    assert bandwidth_limit(arch, HARDWARE["CPU-2core"], 1, weights, 16, 314, 36, 8) is None


def step(index, phase, rate, p50, p95, p99, passed, start, **extra):
    return {
        "index": index,
        "phase": phase,
        "offered_rps": rate,
        "achieved_rps": rate * 0.99,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "ttft_p50_ms": 50.0,
        "ttft_p95_ms": 90.0,
        "itl_p50_ms": 8.0,
        "itl_p95_ms": 12.0,
        "error_rate": 0.0,
        "mean_prompt_tokens": 300.0,
        "mean_completion_tokens": 40.0,
        "passed": passed,
        "reason": "x",
        "start": start,
        "end": start + 30,
        **extra,
    }


def make_run(
    tmp_path, name="fixture", model="qwen3-4b-text2sql", quantization=None, rps=222.0, weights=7.6, high=229.0
):
    run = tmp_path / name
    (run / "server").mkdir(parents=True)
    steps = [
        step(0, "grow", 100, 300, 400, 500, True, 1000, server={"kv_cache_usage_peak": 0.2}),
        step(
            1,
            "grow",
            200,
            350,
            560,
            700,
            True,
            1100,
            server={"kv_cache_usage_peak": 0.4, "gpu_memory_used_peak_bytes": 70 * GIB},
        ),
        step(2, "grow", 400, 2000, 5000, 6000, False, 1200, server={"kv_cache_usage_peak": 0.97}),
        step(
            3,
            "confirm",
            rps,
            390,
            640,
            870,
            True,
            1300,
            mean_ms=420.0,
            server={"kv_cache_usage_peak": 0.5, "server_process_memory_peak_bytes": 72 * GIB},
        ),
    ]
    result = {
        "name": "text2sql-fixture",
        "mode": "search",
        "partial": False,
        "max_sustained_rps": rps,
        "max_sustained_rps_interval": {"low": rps, "high": high, "confidence": 0.95, "label": COVERAGE.label},
        "first_failing_rps": 229.0,
        "generator_bottleneck": None,
        "slo": {"p95_ms": 1000, "p99_ms": None, "ttft_p95_ms": None, "max_error_rate": 0.01},
        "steps": steps,
        "model": model,
        "cost": {
            "gpu": "H100-SXM",
            "gpus_per_replica": 1,
            "usd_per_gpu_hour": 2.40,
            "utilizations": [1.0, 0.5, 0.1],
            "hosted_prices": None,
        },
    }
    (run / "result.json").write_text(json.dumps(result))
    (run / "server" / "config.json").write_text(
        json.dumps(
            {
                "variant": name,
                "model": model,
                "quantization": quantization,
                "kv_cache_dtype": "auto",
                "model_weights_gib_logged": weights,
                "cache_config": {"block_size": "16", "num_gpu_blocks": "4096", "cache_dtype": "auto"},
            }
        )
    )
    return run


def test_weight_bits_follow_the_served_dtype():
    from reports.capacity import weight_bits

    assert weight_bits("fp8", "bfloat16") == 8 and weight_bits("bf16", "float32") == 32
    assert weight_bits("bf16", "bfloat16") == 16 and weight_bits("bf16", None) == 16


def test_headline_numbers_from_a_fixture_run(tmp_path):
    cap = capacity(make_run(tmp_path))
    assert cap["max_sustained_rps"] == 222.0 and cap["first_failing_rps"] == 229.0
    interval = {"low": 222.0, "high": 229.0, "confidence": 0.95, "label": COVERAGE.label}
    assert cap["max_sustained_rps_interval"] == interval
    assert cap["latency_at_max"]["p50_ms"] == 390 and cap["latency_at_max"]["p95_ms"] == 640
    assert cap["latency_at_max"]["p99_ms"] == 870
    assert cap["requests_per_day_per_gpu"] == 222 * 86400
    cost = {c["utilization"]: c for c in cap["cost"]}
    assert round(cost[1.0]["usd_per_million_requests"], 2) == 3.00
    assert round(cost[0.1]["usd_per_million_requests"], 2) == 30.03
    assert cost[1.0]["usd_per_million_tokens"] == pytest.approx(2.40 / (222 * 3600) * 1e6 / 340)
    mem = cap["memory"]
    assert mem["weights_gib_logged"] == 7.6 and 7.4 < mem["weights_gib_computed"] < 7.6
    assert mem["kv_cache_size_tokens"] == 4096 * 16
    assert mem["kv_cache_usage_peak"] == 0.97  # peak over all steps, the failing one included
    assert mem["kv_cache_usage_at_max"] == 0.5  # over the confirmation step: what the sustained rate needs
    assert mem["gpu_memory_used_peak_gib"] == 70 and mem["server_process_memory_peak_gib"] == 72
    hosted = {r["name"]: r["usd_per_million_requests"] for r in cap["hosted"]["rows"]}
    assert hosted["Claude Haiku 4.5"] == pytest.approx(300 * 1.0 + 40 * 5.0)
    assert hosted["GPT-5 nano"] == pytest.approx(300 * 0.05 + 40 * 0.40)
    limit = cap["hardware_limit"]
    assert limit["precision"] == "bf16" and limit["mfu"] == pytest.approx(222 / limit["compute_ceiling_rps"])
    # no server batch in the fixture: Little's law, 219.8 req/s achieved x 0.42 s = 92.3 in flight
    assert limit["batch"] == pytest.approx(222 * 0.99 * 0.420) and limit["batch_from"].startswith("Little")
    assert limit["mbu"] == pytest.approx(222 / limit["bandwidth_ceiling_rps"]) and 0 < limit["mbu"] < 1


@pytest.mark.parametrize("engine", ["vllm", "transformers"])
def test_a_stand_in_prints_no_hosted_prices_and_no_hardware_ceiling(tmp_path, engine):
    """Random weights on an H100, whatever the engine: no API price to compare with, no ceiling to
    divide by; the cost of the GPU-hours stays, labelled as a stand-in's."""
    run = make_run(tmp_path)
    config_path = run / "server" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(random_weights=True, engine=engine)
    config_path.write_text(json.dumps(config))
    cap = write_report(run)
    assert cap["stand_in"] and "hosted" not in cap and "hardware_limit" not in cap
    md = (run / "report.md").read_text()
    assert "STAND-IN" in md and "Hosted APIs" not in md and "Distance to the hardware limit" not in md
    assert "$3.00" in md  # 222 req/s at $2.40/h: what these GPU-hours cost, whatever served on them


def test_a_fitted_answer_above_the_rate_that_passed(tmp_path):
    """The answer inside the interval costs and sizes the fleet; the latency beside it is what was
    measured at the rate that passed, and the report says both."""
    run = make_run(tmp_path)
    data = json.loads((run / "result.json").read_text())
    data["max_sustained_rps"] = 226.0
    data["max_sustained_rps_fit"] = {"rps": 226.0, "fitted": True, "steps": 4, "requests": 51234}
    (run / "result.json").write_text(json.dumps(data))
    write_report(run)
    cap = json.loads((run / "capacity.json").read_text())
    assert cap["max_sustained_rps"] == 226.0 and cap["max_sustained_rps_interval"]["low"] == 222.0
    assert cap["latency_measured_at_rps"] == 222.0 and cap["latency_at_max"]["p95_ms"] == 640
    cost = {c["utilization"]: c for c in cap["cost"]}
    assert cost[1.0]["usd_per_million_requests"] == pytest.approx(2.40 / (226 * 3600) * 1e6)
    report = (run / "report.md").read_text()
    assert (
        "226.0 req/s (where the fraction over the bound crosses the allowed, fitted over 51,234 requests in 4 steps)"
        in report
    )
    assert "Latency at 222.0 req/s (passed), p50 / p95 / p99" in report and "Latency at max" not in report


def test_an_answer_without_a_fit_is_the_rate_that_passed(tmp_path):
    run = make_run(tmp_path)
    data = json.loads((run / "result.json").read_text())
    data["max_sustained_rps_fit"] = {"rps": 222.0, "fitted": False, "steps": 0, "requests": 0}
    (run / "result.json").write_text(json.dumps(data))
    write_report(run)
    report = (run / "report.md").read_text()
    unfitted = "222.0 req/s (the highest rate that passed: the steps near the knee fit no rising line)"
    assert f"| Max sustained rate | {unfitted} |" in report
    assert "Latency at max" in report and "(passed)" not in report


def test_a_partial_run_reads_its_lowest_rate_that_did_not_pass_off_its_steps(tmp_path):
    """Interrupted mid-search (no outcome, so no first_failing_rps): the marginal and failed steps
    it judged still say where it stopped passing."""
    run = make_run(tmp_path)
    data = json.loads((run / "result.json").read_text())
    data.update(partial=True, max_sustained_rps=None, max_sustained_rps_interval=None, first_failing_rps=None)
    data["steps"][2]["decision"] = "fail"
    data["steps"][3] = step(3, "bisect", 300, 900, 1100, 1200, False, 1300, decision="marginal")
    (run / "result.json").write_text(json.dumps(data))
    assert capacity(run)["first_failing_rps"] == 300
    write_report(run)
    assert "| Lowest rate that did not pass (failed or marginal) | 300 req/s |" in (run / "report.md").read_text()


def test_report_files_and_html_escaping(tmp_path):
    run = make_run(tmp_path, name="<script>alert(1)</script>", model="evil<script>alert(2)</script>")
    errors = run / "result.json"
    data = json.loads(errors.read_text())
    data["steps"][2]["reason"] = "HTTP 500: <script>alert(3)</script>"
    errors.write_text(json.dumps(data))
    write_report(run)
    for f in ("report.md", "report.html", "capacity.json", "latency_vs_rate.png", "achieved_vs_offered.png"):
        assert (run / f).is_file(), f
    page = (run / "report.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page and "&lt;script&gt;alert(3)" in page
    assert page.count('src="data:image/png;base64,') == 2 and 'src="http' not in page
    md = (run / "report.md").read_text()
    assert "$3.00" in md
    # the interval's label is the coverage the simulated searches measured, not its ends' 95 %
    ends = "222.0–229.0 req/s (passed at 222.0 req/s, failed at 229.0, each decided at 95 %; "
    assert ends + COVERAGE.label + ")" in md and "held the true maximum in" in COVERAGE.label


def test_compare_fp8_against_bf16(tmp_path):
    """One search each: the change lies between the pass and fail rates of the two intervals."""
    bf16 = make_run(tmp_path, "bf16", rps=222.0, high=229.0)
    fp8 = make_run(tmp_path, "fp8", quantization="fp8", rps=255.3, weights=4.3, high=262.0)
    data = write_comparison([bf16, fp8], tmp_path / "cmp")
    rows = {v["variant"]: v for v in data["variants"]}
    change = rows["fp8"]["max_sustained_rps_change"]
    assert change["change"] == pytest.approx(255.3 / 222 - 1)  # +15 %
    assert change["low"] == pytest.approx(255.3 / 229 - 1) and change["high"] == pytest.approx(262 / 222 - 1)
    assert change["verdict"] == "significant" and change["confidence"] == pytest.approx(0.90)
    assert rows["bf16"]["max_sustained_rps_change"] is None  # the baseline
    assert rows["fp8"]["weights_change"] == pytest.approx(4.3 / 7.6 - 1)  # -43 %
    assert data["common_rate_rps"] == 222.0
    assert rows["bf16"]["p95_ms_at_common_rate"] == pytest.approx(640)
    for f in ("comparison.md", "comparison.html", "comparison.json", "latency_vs_rate.png"):
        assert (tmp_path / "cmp" / f).is_file()
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "+15 % (+11 % to +18 %), significant" in md and "255.3 (255.3–262.0)" in md
    assert "SLO: p95 ≤ 1000 ms, errors ≤ 1 %." in md  # one SLO for both, said once


def test_a_comparison_of_estimator_runs_names_their_intervals_and_their_label(tmp_path):
    """The estimator's interval has no pass and fail rates: its ends and its own measured label."""
    runs = [make_run(tmp_path, "bf16"), make_run(tmp_path, "fp8", quantization="fp8", rps=255.3, high=262.0)]
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        result["max_sustained_rps_interval"] |= {"ends": "fitted", "label": ESTIMATE_INTERVAL_COVERAGE.label}
        (run / "result.json").write_text(json.dumps(result))
    change = write_comparison(runs, tmp_path / "cmp")["variants"][1]["max_sustained_rps_change"]
    assert change["basis"] == "one search each: their intervals' ends", change
    assert change["label"].endswith(ESTIMATE_INTERVAL_COVERAGE.label) and COVERAGE.label not in change["label"]


def test_an_estimator_run_names_its_lowest_rate_over_as_what_it_is(tmp_path):
    """Its chunks are measurements, not verdicts: no 'did not pass' row, and a partial run reads no
    marginal chunk as the rate it stopped passing at."""
    run = make_run(tmp_path)
    result = json.loads((run / "result.json").read_text())
    result["search"] = {"method": "estimate"}
    (run / "result.json").write_text(json.dumps(result))
    write_report(run)
    report = (run / "report.md").read_text()
    assert "| Lowest rate found over the SLO (an overload, or where locating found it over) | 229.0 req/s |" in report
    assert "did not pass" not in report
    result.update(partial=True, first_failing_rps=None)
    result["steps"][3]["decision"] = "marginal"
    (run / "result.json").write_text(json.dumps(result))
    assert capacity(run)["first_failing_rps"] is None


def test_a_comparison_of_runs_under_different_slos_says_each(tmp_path):
    bf16 = make_run(tmp_path, "bf16")
    fp8 = make_run(tmp_path, "fp8", quantization="fp8")
    data = json.loads((fp8 / "result.json").read_text())
    (fp8 / "result.json").write_text(json.dumps(data | {"slo": {"bounds": "mlperf-llama3.1-8b-server"}}))
    write_comparison([bf16, fp8], tmp_path / "cmp")
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert (
        "SLO: bf16: p95 ≤ 1000 ms, errors ≤ 1 %; fp8: TTFT p99 ≤ 2000 ms, TPOT p99 ≤ 100 ms, errors ≤ 1 % "
        "(they differ: compare with care)." in md
    )


def test_overlapping_intervals_are_within_noise(tmp_path):
    bf16 = make_run(tmp_path, "bf16", rps=222.0, high=250.0)
    fp8 = make_run(tmp_path, "fp8", rps=230.0, high=262.0)
    change = write_comparison([bf16, fp8], tmp_path / "cmp")["variants"][1]["max_sustained_rps_change"]
    assert change["low"] == pytest.approx(230 / 250 - 1) and change["high"] == pytest.approx(262 / 222 - 1)
    assert change["verdict"] == "within noise"
    # no failing rate for fp8: the change has no upper end, and still no claim
    fp8 = make_run(tmp_path, "fp8-open", rps=230.0, high=None)
    change = write_comparison([bf16, fp8], tmp_path / "cmp2")["variants"][1]["max_sustained_rps_change"]
    assert change["high"] is None and change["verdict"] == "within noise"


def test_repeated_searches_give_median_spread_and_welch_interval(tmp_path):
    base = [make_run(tmp_path, f"bf16-{i}", rps=r) for i, r in enumerate([220.0, 222.0, 226.0])]
    fp8 = [make_run(tmp_path, f"fp8-{i}", rps=r) for i, r in enumerate([251.0, 255.0, 258.0])]
    labels = ["bf16"] * 3 + ["fp8"] * 3
    data = write_comparison(base + fp8, tmp_path / "cmp", labels=labels)
    rows = {v["variant"]: v for v in data["variants"]}
    assert rows["bf16"]["repeats"] == 3 and rows["bf16"]["max_sustained_rps"] == 222.0  # the median
    assert rows["fp8"]["max_sustained_rps_spread"] == pytest.approx(258 / 251 - 1)
    # Welch on log rates, by hand
    la, lb = np.log([251.0, 255.0, 258.0]), np.log([220.0, 222.0, 226.0])
    va, vb = la.var(ddof=1) / 3, lb.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = t_quantile(0.975, math.floor(df)) * math.sqrt(va + vb)
    change = rows["fp8"]["max_sustained_rps_change"]
    assert change["low"] == pytest.approx(math.exp(la.mean() - lb.mean() - half) - 1)
    assert change["high"] == pytest.approx(math.exp(la.mean() - lb.mean() + half) - 1)
    assert change["change"] == pytest.approx(255 / 222 - 1) and change["verdict"] == "significant"
    assert "3 and 3 repeated searches" in change["basis"]
    assert "median of 3: 251.0, 255.0, 258.0; spread 3 %" in (tmp_path / "cmp" / "comparison.md").read_text()
    # the same medians with a wide spread: no claim
    noisy = [make_run(tmp_path, f"fp8-noisy-{i}", rps=r) for i, r in enumerate([180.0, 255.0, 330.0])]
    data = write_comparison(base + noisy, tmp_path / "cmp2", labels=labels)
    assert data["variants"][1]["max_sustained_rps_change"]["verdict"] == "within noise"


@needs_browser
@pytest.mark.browser
def test_html_opens_in_headless_chromium_without_errors(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    shot = tmp_path / "report.png"
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    run_ = subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1100,1600", (run / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000, run_.stderr[-2000:]
    console_errors = [line for line in run_.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors


def test_common_rate_latency_from_passed_steps_one_per_rate():
    from reports.compare import interpolate_at

    def s(phase, rate, p95, passed):
        return {"phase": phase, "offered_rps": rate, "p95_ms": p95, "passed": passed}

    # a grow step and its confirmation at 30 req/s: the confirmation's 500 ms is the figure at 30
    cap = {"per_step": [s("grow", 20, 300, True), s("grow", 30, 400, True), s("grow", 40, 900, False)]}
    cap["per_step"].append(s("confirm", 30, 500, True))
    assert interpolate_at(cap, 30, "p95_ms") == 500
    assert interpolate_at(cap, 25, "p95_ms") == pytest.approx(400)  # halfway from 300 to 500
    assert interpolate_at(cap, 35, "p95_ms") is None  # beyond what passed: the failed step is no point


def test_server_percentile_shown_with_its_bucket():
    from reports.report import server_quantile_text

    assert server_quantile_text(150.0, [0.0, 300.0]) == "150 (0–300]"
    assert server_quantile_text(4200.0, [2500.0, None]) == "4,200 (2,500–∞]"
    assert server_quantile_text(80.0, None) == "80" and server_quantile_text(None, None) == "–"


def test_pareto_frontier_and_plot(tmp_path):
    from reports.plots import pareto_front

    # (p95 ms, req/s): (300, 20) is beaten by (250, 30); (900, 25) by (600, 40)
    points = [(100, 10), (300, 20), (250, 30), (600, 40), (900, 25), (2000, 45)]
    assert pareto_front(points) == [(100, 10), (250, 30), (600, 40), (2000, 45)]
    bf16 = make_run(tmp_path, "bf16", rps=222.0)
    fp8 = make_run(tmp_path, "fp8", quantization="fp8", rps=255.3, weights=4.3, high=262.0)
    write_comparison([bf16, fp8], tmp_path / "cmp")
    assert (tmp_path / "cmp" / "pareto.png").stat().st_size > 10_000
    assert (
        "![throughput per GPU against latency, every step (Pareto)](pareto.png)"
        in (tmp_path / "cmp" / "comparison.md").read_text()
    )


def test_weights_compared_as_served_not_as_stored():
    from reports.compare import memory_figure

    # a BF16 checkpoint of 1.7 MiB served as FP32: 3.4 MiB in memory, not the files' size
    fp32 = {"memory": {"weights_gib_logged": None, "weights_gib_computed": 0.00342, "weights_gib_checkpoint": 0.00171}}
    assert memory_figure(fp32) == 0.00342
    assert memory_figure({"memory": {"weights_gib_logged": 7.6, "weights_gib_computed": 7.49}}) == 7.6


def test_a_report_names_every_bound_and_the_goodput_at_the_rate_it_stands_behind(tmp_path):
    """A run with TTFT and TPOT bounds: the headline says each bound's own percentile at the
    confirmed rate, and the goodput there; the steps table gains TPOT and goodput. Older runs (the
    fixture's slo has only p95_ms) keep their table as it was."""
    run = make_run(tmp_path)
    write_report(run)
    assert "goodput" not in (run / "report.md").read_text().lower()
    data = json.loads((run / "result.json").read_text())
    data["slo"] = {"bounds": "mlperf-llama3.1-8b-server", "max_error_rate": 0.01}
    for s in data["steps"]:
        s |= {"at_bounds": {"ttft_p99_ms": 900.0, "tpot_p99_ms": 31.0}, "goodput_rps": s["achieved_rps"] * 0.98}
    confirm = data["steps"][3]
    confirm |= {"at_bounds": {"ttft_p99_ms": 910.0, "tpot_p99_ms": 31.0}, "slo_attainment": 0.98}
    confirm |= {"tpot_p50_ms": 21.0, "tpot_p99_ms": 31.0}
    (run / "result.json").write_text(json.dumps(data))
    write_report(run)
    md = (run / "report.md").read_text()
    assert "| SLO held | TTFT p99 ≤ 2000 ms, TPOT p99 ≤ 100 ms, errors ≤ 1 % |" in md
    assert "| Each bound at max | TTFT p99 910.0 of 2000 ms, TPOT p99 31.0 of 100 ms |" in md
    assert f"| Goodput at max | {222 * 0.99 * 0.98:.1f} req/s (98.0 % of requests met every bound) |" in md
    assert "| Time per output token at max, p50 / p99 | 21.0 / 31.0 ms |" in md
    assert "| TTFT p99 ms | TPOT p99 ms | goodput/s |" in md  # the bounds' own percentiles, each step


def test_a_result_of_a_newer_layout_is_one_line_and_exit_2(tmp_path):
    """result.json says its layout; this llmcap reads its own and every older one (the stored
    examples have none, version 1), and refuses a newer one by name rather than misreading it."""
    run = make_run(tmp_path)
    data = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps(data | {"schema_version": RESULT_SCHEMA_VERSION + 1}))
    cli = subprocess.run([sys.executable, "-m", "llmcap.cli", "report", str(run)], capture_output=True, text=True)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert f"result.json: schema_version {RESULT_SCHEMA_VERSION + 1} is newer than this llmcap reads" in cli.stderr
