"""SLO bounds as users write them: parsed from a profile, a flag or a preset; each judged on its own
latency (TPOT: (end - first token) / (tokens - 1)); goodput counts the requests that met them all."""

import argparse

import numpy as np
import pytest

from llmcap.confidence import FAIL, PASS
from llmcap.profile import ProfileError, SearchParams, Slo, load_profile
from llmcap.slo import PRESETS, parse_bounds
from loadtest.search import EXTRA_DOUBLINGS, look_confidence, pass_looks, requests_to_pass
from loadtest.settings import resolve
from loadtest.stats import look, summarize_window, tpot_ms
from tests.conftest import REPO
from tests.test_search_logic import make_samples

MINIMAL = "name: t\nmodel: {id: some/model}\nserving: {variants: {a: {}}}\n"


def keys(slo: Slo) -> dict:
    return {b.key: b.limit_ms for b in slo.latency_bounds()}


def test_a_spec_takes_pairs_and_presets_later_ones_overriding():
    slo = Slo(bounds="mlperf-llama3.1-8b-server, ttft_p99_ms=1500 ,e2e_p99.9_ms=9000")
    assert keys(slo) == {"e2e_p99.9_ms": 9000, "ttft_p99_ms": 1500, "tpot_p99_ms": 100}
    assert slo.describe() == "p99.9 <= 9000 ms, TTFT p99 <= 1500 ms, TPOT p99 <= 100 ms, errors <= 1 %"
    assert keys(Slo(bounds="mlperf-llama3.1-8b-interactive")) == {"ttft_p99_ms": 500, "tpot_p99_ms": 30}
    assert all(parse_bounds(spec) for spec in PRESETS.values())


def test_the_first_names_keep_their_meaning():
    """`--slo-p99-ms 800` alone kept the default p95 beside it, and still does."""
    assert keys(Slo()) == {"e2e_p95_ms": 1000}
    assert keys(Slo(p99_ms=800)) == {"e2e_p95_ms": 1000, "e2e_p99_ms": 800}
    assert keys(Slo(p95_ms=500, ttft_p95_ms=200)) == {"e2e_p95_ms": 500, "ttft_p95_ms": 200}
    old_record = {"p95_ms": 600.0, "p99_ms": None, "ttft_p95_ms": None, "max_error_rate": 0.01}
    assert Slo.from_record(old_record).describe() == "p95 <= 600 ms, errors <= 1 %"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("tpot_p100_ms=5", "tpot_p100_ms: the percentile must be from p50 to p99.9 (p99.9, not p999), got p100"),
        ("tpot_p999_ms=5", "(p99.9, not p999)"),
        ("itl_p99_ms=5", "'itl_p99_ms' is not a bound: expected e2e, ttft or tpot"),
        ("ttft_p99_ms=fast", "ttft_p99_ms: expected a number of ms, got 'fast'"),
        ("ttft_p99_ms=0", "ttft_p99_ms: expected a number of ms > 0, got 0.0"),
        ("mlperf-llama9-server", "'mlperf-llama9-server': expected KEY=MS (e.g. ttft_p99_ms=2000) or a preset"),
        ("", "no latency bound"),
    ],
)
def test_a_bad_spec_says_which_item(spec, message):
    with pytest.raises(ValueError, match=None) as e:
        Slo(bounds=spec).latency_bounds()
    assert message in str(e.value)


def write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_a_shipped_profile_says_its_bound_in_the_new_form():
    assert keys(load_profile(REPO / "profiles" / "cpu-tiny.yaml").slo) == {"e2e_p95_ms": 500}


@pytest.mark.parametrize(
    "slo_yaml,expected",
    [
        (
            "{e2e_p95_ms: 1000, ttft_p99_ms: 2000, tpot_p99_ms: 100}",
            {"e2e_p95_ms": 1000, "ttft_p99_ms": 2000, "tpot_p99_ms": 100},
        ),
        ("{tpot_p99_ms: 100}", {"tpot_p99_ms": 100}),  # the keys replace the default
        ("{p99_ms: 800}", {"e2e_p95_ms": 1000, "e2e_p99_ms": 800}),  # a first name sits beside it
        (
            "{bounds: mlperf-llama2-70b-server, e2e_p95_ms: 5000}",
            {"e2e_p95_ms": 5000, "ttft_p99_ms": 2000, "tpot_p99_ms": 200},
        ),
    ],
)
def test_profile_bounds(tmp_path, slo_yaml, expected):
    assert keys(load_profile(write(tmp_path, MINIMAL + f"slo: {slo_yaml}\n")).slo) == expected


@pytest.mark.parametrize(
    "slo_yaml,message",
    [
        ("{tpot_p100_ms: 5}", "p.yaml: slo.tpot_p100_ms: the percentile must be from p50 to p99.9"),
        ("{tpot_p99_ms: fast}", "p.yaml: slo.tpot_p99_ms: expected a number of ms > 0, got 'fast'"),
        ("{bounds: 'ttft_p99_ms=2000,oops'}", "p.yaml: slo.bounds: 'oops': expected KEY=MS"),
        ("{tpot_99: 5}", "p.yaml: slo.tpot_99: unknown key (expected one of: bounds, p95_ms"),
    ],
)
def test_profile_bound_errors_are_one_line(tmp_path, slo_yaml, message):
    with pytest.raises(ProfileError) as e:
        load_profile(write(tmp_path, MINIMAL + f"slo: {slo_yaml}\n"))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_tpot_is_the_time_after_the_first_token_per_token_after_it():
    s, _ = make_samples(4, 10.0, 0.3)  # TTFT 50 ms, end 300 ms, 30 tokens
    s["completion_tokens"] = [30, 2, 1, -1]
    assert tpot_ms(s)[:2] == pytest.approx([250 / 29, 250.0])
    assert np.isnan(tpot_ms(s)[2:]).all()  # one token, or a count the server did not give: no TPOT


def test_look_judges_a_tpot_bound_on_its_own_latency():
    """600 requests with TPOT 250/29 = 8.6 ms and end to end 300 ms: a p99 bound of 20 ms passes (299
    requests with none over can), one of 5 ms fails while the end-to-end bound passes."""
    s, _ = make_samples(600, 30.0, 0.3)
    finished = look(s, np.zeros(0), float("inf"), 1000.0, 1020.0, Slo(bounds="e2e_p95_ms=500,tpot_p99_ms=20"), 0.95)
    assert finished.decision == PASS, finished.reason
    tight = look(s, np.zeros(0), float("inf"), 1000.0, 1020.0, Slo(bounds="e2e_p95_ms=500,tpot_p99_ms=5"), 0.95)
    assert tight.decision == FAIL and tight.reason.startswith("TPOT p99: 600 of 600 over 5 ms"), tight.reason
    assert [(e.name, e.decision) for e in tight.exceedances] == [("p95", PASS), ("TPOT p99", FAIL)]


def test_goodput_counts_the_requests_that_met_every_bound():
    """100 s of 10 req/s: every other request takes 1.2 s end to end, and a tenth failed outright;
    goodput is what met p95 <= 1 s and TPOT p99 <= 20 ms, per second of the window."""
    latency = np.where(np.arange(1000) % 2 == 0, 0.3, 1.2)
    errors = np.where(np.arange(1000) % 10 == 1, 2, 0)  # on the fast ones: 450 fast successes left
    s, itl = make_samples(1000, 10.0, latency, error=errors)
    summary = summarize_window(s, itl, 1000.0, 1100.0, Slo(bounds="e2e_p95_ms=1000,tpot_p99_ms=20"))
    assert summary["goodput_rps"] == pytest.approx(500 / 100)  # the fast half; errors fell on odd ones
    assert summary["slo_attainment"] == pytest.approx(500 / 1000)
    assert summary["at_bounds"]["e2e_p95_ms"] == pytest.approx(1200)
    assert summary["at_bounds"]["tpot_p99_ms"] == pytest.approx(max(250 / 29, 1150 / 29))


@pytest.mark.parametrize(
    "percentile,at_95,at_99", [(50, 5, 7), (90, 29, 44), (95, 59, 90), (99, 299, 459), (99.9, 2995, 4603)]
)
def test_a_percentile_needs_this_many_requests_before_it_can_pass(percentile, at_95, at_99):
    """The table in docs/statistics.md: with none over the bound, at 95 % and at a search step's
    per-look level (99 % with the default windows)."""
    params = SearchParams()
    looks = len(pass_looks(params.step_seconds, params.max_step_seconds)) + EXTRA_DOUBLINGS
    assert look_confidence(params.confidence, looks) == pytest.approx(0.99)
    slo = Slo(bounds=f"e2e_p{percentile}_ms=100")
    assert requests_to_pass(slo, 0.95) == at_95 and requests_to_pass(slo, 0.99) == at_99
    assert f"| p{percentile:g} | {at_95:,} | {at_99:,} |" in (REPO / "docs" / "statistics.md").read_text()


def test_a_clean_window_too_short_for_a_high_percentile_says_so():
    """600 requests, none over: a p99.9 bound needs 2,995 before "none over" can pass it, and the
    undecided verdict says that, not only its interval."""
    s, _ = make_samples(600, 30.0, 0.3)
    v = look(s, np.zeros(0), float("inf"), 1000.0, 1020.0, Slo(bounds="e2e_p99.9_ms=500"), 0.95)
    assert v.decision == "undecided"
    assert "not yet decidable against the allowed 0.1%; too few requests for p99.9: a pass needs 2,995" in v.reason


def test_a_slo_argument_replaces_the_profiles_bounds_first_names_too(tmp_path):
    """`slo: {p95_ms: 500}` run with `--slo e2e_p95_ms=300`: the argument wins, as every argument
    does; `--slo tpot_p99_ms=50` leaves no end-to-end bound of the profile's behind."""
    path = write(tmp_path, MINIMAL + "slo: {p95_ms: 500, p99_ms: 900}\n")
    assert keys(load_profile(path).slo) == {"e2e_p95_ms": 500, "e2e_p99_ms": 900}
    for spec, expected in [("e2e_p95_ms=300", {"e2e_p95_ms": 300}), ("tpot_p99_ms=50", {"tpot_p99_ms": 50})]:
        run = resolve(argparse.Namespace(llmcap_profile=str(path), slo=spec, host=""), "text2sql")
        assert keys(run.slo) == expected
    beside = resolve(argparse.Namespace(llmcap_profile=str(path), slo_p99_ms=700.0, host=""), "text2sql")
    assert keys(beside.slo) == {"e2e_p95_ms": 500, "e2e_p99_ms": 700}  # a first-name flag sets its one bound


def test_a_result_keeps_the_bounds_it_ran_with():
    """A preset's numbers as run, so a later change to the preset does not rewrite old reports."""
    record = Slo(bounds="mlperf-llama3.1-8b-server").record()
    assert record["bounds_ms"] == {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}
    record["bounds"] = "mlperf-llama3.1-8b-interactive"  # as if the name now meant other numbers
    assert keys(Slo.from_record(record)) == {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}
    with pytest.raises(ValueError, match="expected a number of ms > 0, got inf"):
        Slo(bounds="e2e_p95_ms=inf").latency_bounds()
