"""The plots, asserted on the figures themselves: every mark in the legend, axes in the units the
tables use, integer ticks for counts, marginal and failed steps drawn apart."""

import matplotlib.pyplot as plt
import pytest

from llmcap.rundir import scrape_line, telemetry_path
from reports.plots import latency_figure, replicas_figure, server_figure

SLO = {"bounds": "e2e_p95_ms=5000", "max_error_rate": 0.01}


def step(rate, p95, decision, start=0.0):
    return {
        "offered_rps": rate,
        "p50_ms": p95 * 0.6,
        "p95_ms": p95,
        "p99_ms": p95 * 1.1,
        "passed": decision == "pass",
        "decision": decision,
        "start": start,
        "end": start + 10,
    }


def cap(steps, rps=4.0, interval=(4.0, 5.0)):
    low, high = interval
    return {
        "per_step": steps,
        "slo": SLO,
        "max_sustained_rps": rps,
        "max_sustained_rps_interval": {"low": low, "high": high, "confidence": 0.95},
    }


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def tick_texts(axis) -> list[str]:
    axis.axes.figure.canvas.draw()
    return [t.get_text() for t in axis.get_majorticklabels() + axis.get_minorticklabels() if t.get_text()]


def test_latency_plot_puts_the_answer_its_interval_and_each_verdict_in_the_legend():
    steps = [step(2, 4100, "pass"), step(4, 4400, "pass"), step(5, 4800, "marginal"), step(6, 4900, "fail")]
    fig = latency_figure({"bf16": cap(steps)})
    (ax,) = fig.axes
    texts = legend_texts(ax)
    for wanted in (
        "bf16 max sustained 4.0 req/s",
        "bf16 interval 4.0-5.0 req/s",
        "step passed",
        "step failed",
        "step marginal (counts as failed)",
        "SLO p95 <= 5000 ms",
    ):
        assert wanted in texts, texts
    ticks = tick_texts(ax.yaxis)  # 4100-5000 ms: inside one decade, labelled in plain ms
    assert ticks and all("10^" not in t and "times" not in t for t in ticks), ticks
    assert "4000" in ticks or "5000" in ticks, ticks
    markers = {c.get_label(): c for c in ax.collections}
    assert markers["step marginal (counts as failed)"].get_facecolors().size == 0  # hollow: not a pass


def test_an_open_interval_reaches_the_highest_rate_measured():
    fig = latency_figure({"fp8": cap([step(2, 4100, "pass"), step(8, 4500, "pass")], rps=8.0, interval=(8.0, None))})
    assert "fp8 interval 8.0 and up req/s" in legend_texts(fig.axes[0])


def test_replicas_plot_has_integer_ticks_the_traffic_and_every_variant_visible():
    def fleet(by_minute):
        trace = {"replicas_by_minute": by_minute, "rps_by_minute": [30.0, 90.0, 150.0, 60.0]}
        return {"trace": trace, "replicas_at_peak": max(by_minute)}

    fig = replicas_figure({"bf16": fleet([1, 2, 3, 2]), "fp8-kv": fleet([1, 2, 3, 2])})
    ax, traffic = fig.axes
    assert traffic.get_ylabel() == "traffic (req/s)"
    texts = legend_texts(ax)
    assert texts == ["bf16 (fixed fleet: 3)", "fp8-kv (fixed fleet: 3)", "traffic (right axis)"], texts
    ticks = tick_texts(ax.yaxis)
    assert ticks and all(float(t.replace("−", "-")) == int(float(t.replace("−", "-"))) for t in ticks), ticks
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert len(styles) == 2  # the same fleet twice: one dash each, or the second hides the first


def test_server_plot_shows_the_kv_cache_in_percent_and_shades_marginal_apart(tmp_path):
    path = telemetry_path(tmp_path, "vllm")
    path.parent.mkdir(parents=True)
    rows = lambda kv, running: [  # noqa: E731
        ["vllm:kv_cache_usage_perc", {}, kv],
        ["vllm:num_requests_running", {}, running],
        ["vllm:num_requests_waiting", {}, 0.0],  # none ever waited: a flat zero
    ]
    path.write_text("".join(scrape_line(100.0 + t, rows(0.008 * t, t % 3)) for t in range(40)))
    steps = [step(2, 100, "pass", 101), step(4, 100, "marginal", 112), step(6, 100, "fail", 124)]
    fig = server_figure(tmp_path, {"per_step": steps})
    kv, running, waiting = fig.axes
    assert kv.get_ylabel() == "KV cache in use (%)"
    assert max(kv.get_lines()[0].get_ydata()) == pytest.approx(0.008 * 39 * 100)  # 31.2 %, not 0.312
    assert legend_texts(kv) == ["measured window: pass", "measured window: marginal", "measured window: fail"]
    hatches = [p.get_hatch() for p in kv.patches]
    assert hatches == [None, "//", None], hatches
    for counts in (running, waiting):
        ticks = tick_texts(counts.yaxis)
        assert ticks and all(float(t.replace("−", "-")).is_integer() and not t.startswith("−") for t in ticks), ticks
