"""Fleet sizing for a traffic forecast, with numbers worked by hand; the reference run's report
with a forecast; a bad trace named by file and line."""

import json

import pytest

from llmcap.errors import BadInput
from reports.compare import write_comparison
from reports.fleet import HOURS_PER_MONTH, cheapest, fleet_plan, read_trace, replicas_for
from reports.report import write_report
from tests.test_reports import make_run


def day_trace() -> list[float]:
    """A day by the minute: 8 busy hours at 6,000 requests a minute (100 req/s), 16 at 1,200 (20 req/s)."""
    return [6000.0] * (8 * 60) + [1200.0] * (16 * 60)


def test_replicas_by_hand():
    # 30 req/s per replica loaded to 80 %: 24 req/s each
    assert replicas_for(100, 30, 0.8, 0) == 5  # 100 / 24 = 4.17 -> 5
    assert replicas_for(100, 30, 0.8, 1) == 6  # N+1
    assert replicas_for(96, 30, 0.8, 0) == 4  # exactly 4 x 24: no fifth
    assert replicas_for(0, 30, 0.8, 0) == 1  # one replica always serves


def test_a_day_trace_by_hand():
    fleet = fleet_plan(30.0, 1, 2.40, per_minute=day_trace(), target_utilization=0.8, spare_replicas=1)
    assert fleet["peak_rps"] == 100.0 and fleet["average_rps"] == pytest.approx((8 * 100 + 16 * 20) / 24)
    # peak: ceil(100 / 24) + 1 = 6; the quiet hours: ceil(20 / 24) + 1 = 2
    assert fleet["replicas_at_peak"] == 6 and fleet["gpus_at_peak"] == 6
    trace = fleet["trace"]
    assert trace["replicas_by_minute"][0] == 6 and trace["replicas_by_minute"][-1] == 2
    # a fixed fleet of 6 for 730 h at $2.40: $10,512 a month, for 46.67 req/s on average
    assert fleet["fixed_fleet_usd_per_month"] == pytest.approx(6 * 2.40 * 730)
    requests_per_month = (8 * 100 + 16 * 20) / 24 * 3600 * 730
    assert fleet["fixed_fleet_usd_per_million_requests"] == pytest.approx(10512 / requests_per_month * 1e6)
    assert fleet["fixed_fleet_usd_per_million_requests"] == pytest.approx(85.71, abs=0.01)
    # following the trace: 8 h x 6 + 16 h x 2 = 80 GPU-hours a day, $192 a day, 4.032 M requests a day
    assert trace["gpu_hours"] == pytest.approx(80.0)
    assert trace["usd_per_month"] == pytest.approx(80 * 2.40 * 730 / 24)
    assert trace["usd_per_million_requests"] == pytest.approx(192 / 4.032, abs=1e-6)  # $47.62
    assert fleet["average_utilization"] == pytest.approx(46.667 / (6 * 30), abs=1e-3)


def test_a_peak_only_forecast_by_hand():
    # 2 GPUs per replica (tensor parallel), 222 req/s each at 70 %: 155.4 req/s per replica
    fleet = fleet_plan(222.0, 2, 2.40, peak_rps=1000, average_rps=400, target_utilization=0.7, spare_replicas=1)
    assert fleet["replicas_at_peak"] == 8  # ceil(1000 / 155.4) = ceil(6.43) = 7, +1
    assert fleet["gpus_at_peak"] == 16 and "trace" not in fleet
    assert fleet["fixed_fleet_usd_per_month"] == pytest.approx(16 * 2.40 * HOURS_PER_MONTH)  # $28,032
    assert fleet["fixed_fleet_usd_per_million_requests"] == pytest.approx(28032 / (400 * 3600 * 730) * 1e6)
    # the interval's low end decides too: at 180 req/s a replica holds 126 req/s, 1000 needs 8 (+1)
    low = fleet_plan(222.0, 2, 2.40, peak_rps=1000, target_utilization=0.7, max_sustained_rps_low=180.0)
    assert low["replicas_at_peak_if_rate_is_low"] == 9
    assert low["average_rps"] == 1000  # no average given, no trace: the peak all month


def test_the_cheapest_fleet_is_an_eligible_one():
    fast = fleet_plan(255.0, 1, 2.40, peak_rps=1000)
    slow = fleet_plan(222.0, 1, 2.40, peak_rps=1000)
    assert fast["replicas_at_peak"] < slow["replicas_at_peak"]
    assert cheapest({"bf16": slow, "fp8": fast}, {"bf16", "fp8"}) == "fp8"
    assert cheapest({"bf16": slow, "fp8": fast}, {"bf16"}) == "bf16"  # fp8 lost the answers
    assert cheapest({"bf16": None, "fp8": fast}, set()) is None


def test_a_trace_file_read_and_its_bad_line_named(tmp_path):
    bare = tmp_path / "bare.txt"
    bare.write_text("10\n20\n\n30\n")
    assert read_trace(bare) == [10.0, 20.0, 30.0]
    with_header = tmp_path / "minutes.csv"
    with_header.write_text("minute,requests\n0,100\n1,250\n")
    assert read_trace(with_header) == [100.0, 250.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("minute,requests\n0,100\n1,lots\n")
    with pytest.raises(BadInput, match=r"bad.csv:3: expected a count of requests \(0 or more\), got 'lots'"):
        read_trace(bad)
    no_column = tmp_path / "cols.csv"
    no_column.write_text("minute,rps\n0,1\n")
    with pytest.raises(BadInput, match="cols.csv:1: expected a 'requests' column"):
        read_trace(no_column)


def test_the_reference_run_with_a_forecast(tmp_path):
    """The H100 reference figures (222 req/s, p50/p95/p99 390/640/870 ms, Qwen3-4B, $2.40/h) and a
    forecast of a 1,000 req/s peak: the report shows the cost, the fleet and both ceilings."""
    run = make_run(tmp_path, model="Qwen/Qwen3-4B")
    result = json.loads((run / "result.json").read_text())
    result["traffic"] = {"peak_rps": 1000.0, "average_rps": 300.0, "target_utilization": 0.8, "spare_replicas": 1}
    (run / "result.json").write_text(json.dumps(result))
    cap = write_report(run)
    assert cap["fleet"]["replicas_at_peak"] == 7  # ceil(1000 / 177.6) = 6, +1
    md = (run / "report.md").read_text()
    assert "$3.00" in md and "$30.03" in md
    assert "| Replicas at peak | 7 |" in md
    assert "| Fixed fleet: $ per month | $12,264" in md  # 7 x $2.40 x 730 h
    assert "Compute ceiling" in md and "Bandwidth ceiling at that batch" in md
    limit = cap["hardware_limit"]
    # 300 prompt tokens to 40 generated: prefill dominates, so this service sits nearer the compute
    # ceiling (MFU 57 %: 222 of ~391 req/s) than the bandwidth one at its batch of ~92 (MBU 36 %)
    assert limit["mfu"] == pytest.approx(0.567, abs=0.005) and limit["mbu"] == pytest.approx(0.356, abs=0.005)
    assert "STAND-IN" not in md and "Hosted APIs" in md


def test_comparison_names_the_cheapest_fleet_that_keeps_the_slo(tmp_path):
    runs = [make_run(tmp_path, "bf16", rps=222.0), make_run(tmp_path, "fp8", quantization="fp8", rps=255.3)]
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        result["traffic"] = {"peak_rps": 1000.0, "target_utilization": 0.8, "spare_replicas": 1}
        (run / "result.json").write_text(json.dumps(result))
    data = write_comparison(runs, tmp_path / "cmp")
    fleets = {v["variant"]: v["fleet"]["replicas_at_peak"] for v in data["variants"]}
    assert fleets == {"bf16": 7, "fp8": 6} and data["cheapest_fleet"] == "fp8"
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Fleet for the forecast" in md and "Cheapest that held the SLO and kept the answers: fp8." in md
    # beside each, what it needs if its true maximum sits at its interval's low end
    assert "| variant | replicas at peak | … at the interval's low end |" in md
    for v in data["variants"]:
        at_peak, low = v["fleet"]["replicas_at_peak"], v["fleet"]["replicas_at_peak_if_rate_is_low"]
        assert low is None and f"| {v['variant']} | {at_peak} | {at_peak} |" in md  # the answer is its low end
    # an answer of 255 req/s fitted above its confirmed 200: ceil(1000 / 204) + 1 = 6, at 200 ceil(1000 / 160) + 1 = 8
    fitted = make_run(tmp_path, "fitted", rps=200.0, high=300.0)
    result = json.loads((fitted / "result.json").read_text())
    result["max_sustained_rps"] = 255.0
    result["traffic"] = {"peak_rps": 1000.0, "target_utilization": 0.8, "spare_replicas": 1}
    (fitted / "result.json").write_text(json.dumps(result))
    write_comparison([runs[0], fitted], tmp_path / "cmp2")
    assert "| fitted | 6 | 8 |" in (tmp_path / "cmp2" / "comparison.md").read_text()
