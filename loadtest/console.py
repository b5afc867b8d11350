"""What a person watching the run reads: one line per step, a live line per second in fixed mode."""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from llmcap.confidence import ESTIMATE_ENDS, FAIL, PASS, interval_label
from llmcap.rundir import read_result, write_progress
from llmcap.slo import ALWAYS_SHOWN, bound_name
from loadtest.clock import now

_lines_to_stderr = False  # --result-json: stdout holds the JSON alone


def send_lines_to_stderr() -> None:
    global _lines_to_stderr
    _lines_to_stderr = True


def _p(line: str) -> None:
    out = sys.stderr if _lines_to_stderr else sys.stdout
    out.write(line + "\n")
    out.flush()


def result_json(run_dir) -> None:
    """result.json as one line on stdout, for a CI step to read."""
    result = read_result(run_dir)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def ms_text(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0f}"


def banner(settings, n_prompts: int) -> None:
    mode = {
        "fixed": lambda: f"fixed {settings.rps:g} req/s for {settings.duration:g} s",
        "concurrency": lambda: (
            f"closed loop at concurrency {', '.join(map(str, settings.concurrency))}, {settings.duration:g} s each"
        ),
        "search": lambda: f"SLO search ({settings.slo.describe()})",
    }[settings.mode]()
    _p(
        f"llmcap: {settings.name}: {n_prompts} prompts, model {settings.model or '(from /v1/models)'}, "
        f"{mode}; run directory {settings.run_dir}"
    )
    if not settings.request.unique_marker:
        _p(
            f"llmcap: warning: request.unique_marker is off: the {n_prompts} prompts repeat every {n_prompts} "
            "requests, and from the first repeat the server's prefix cache serves each whole, which flatters "
            "the result (docs/prompt-files.md)"
        )


def step_line(step: dict) -> None:
    _p(format_step(step))


def verdict_of(step: dict) -> str:
    """PASS / FAIL / MARGINAL as a person reads it: a pass the load generator could not vouch for is no pass."""
    verdict = (step.get("decision") or ("pass" if step["passed"] else "fail")).upper()
    return "FAIL" if verdict == "PASS" and not step["passed"] else verdict


def format_step(step: dict) -> str:
    verdict = verdict_of(step)
    errors = f"{step['error_rate']:.1%}"
    measured = f" {step['measured_s']:3.0f}s" if step.get("measured_s") is not None else ""
    return (
        f"step {step['index']:>2} {step['phase']:<7}{measured} offered {step['offered_rps']:8.2f}/s "
        f"achieved {step['achieved_rps']:8.2f}/s  p50 {ms_text(step['p50_ms'])} p95 {ms_text(step['p95_ms'])} "
        f"p99 {ms_text(step['p99_ms'])} ms  TTFT p95 {ms_text(step['ttft_p95_ms'])} ms  {_other_bounds(step)}"
        f"errors {errors}  {verdict}: {step['reason']}"
    ) + (f"  [warning: {step['warning']}]" if step.get("warning") else "")


def _other_bounds(step: dict) -> str:
    """The SLO's bounds the line does not already show (TPOT p99 ...), and the goodput."""
    parts = []
    for key, value in (step.get("at_bounds") or {}).items():
        if key not in ALWAYS_SHOWN:
            parts.append(f"{bound_name(key)} {ms_text(value)} ms")
    if step.get("goodput_rps") is not None:
        parts.append(f"goodput {step['goodput_rps']:.2f}/s")
    return "".join(f"{p}  " for p in parts)


def final(outcome, settings) -> None:
    for line in final_lines(outcome, settings):
        _p(line)


def final_text(outcome, settings) -> str:
    """The answer in one line (the last of `final_lines`), for the web UI's tab."""
    return final_lines(outcome, settings)[-1]


def final_lines(outcome, settings) -> list[str]:
    if outcome.generator_bottleneck:
        return [
            f"llmcap: the load generator is the bottleneck ({outcome.generator_bottleneck}); no server verdict. "
            "Add processes (--processes N, or --master/--worker on more hosts) and run again."
        ]
    if outcome.mode == "fixed":
        return [f"llmcap: {fixed_verdict(outcome.steps[-1], settings)}; results in {settings.run_dir}/result.json"]
    if outcome.mode == "concurrency":
        return [
            f"llmcap: concurrency {step['concurrency']:>4}: {step['achieved_rps']:.2f} req/s, "
            f"p50 {ms_text(step['p50_ms'])} p95 {ms_text(step['p95_ms'])} ms, "
            f"TTFT p95 {ms_text(step['ttft_p95_ms'])} ms"
            for step in outcome.steps
        ] + [f"llmcap: closed-loop run done; results in {settings.run_dir}/result.json"]
    if outcome.max_sustained_rps:
        return [
            f"llmcap: max sustained rate {outcome.max_sustained_rps:.2f} req/s under {settings.slo.describe()}, "
            f"{interval_text(outcome.interval)}; results in {settings.run_dir}/result.json"
        ]
    lowest = min(outcome.steps, key=lambda s: s["offered_rps"]) if outcome.steps else None
    rate = lowest["offered_rps"] if lowest else settings.search.start_rps
    why = f": {lowest['reason']}" if lowest else ""
    return [f"llmcap: no sustained rate: even {rate:.3g} req/s fails the SLO{why}"]


def fixed_verdict(step: dict, settings) -> str:
    """A fixed-rate run's answer and the exit status it ends with (loadtest/controller.py)."""
    rate = f"{settings.rps:g} req/s for {settings.duration:g} s"
    level = f"{step['confidence'] * 100:g} %"
    if step["decision"] == FAIL:
        return f"{rate}: the SLO failed (exit 3): {step['reason']}"
    if step["decision"] == PASS:
        return f"{rate}: the SLO held at {level} confidence: {step['reason']}"
    return (
        f"{rate}: undecided at {level}, neither held nor failed (exit 0; a longer --duration decides): {step['reason']}"
    )


def interval_text(interval: dict | None) -> str:
    """'interval 30.0-34.0 req/s (each end decided at 95 %; held the true maximum in ...)'."""
    if not interval:
        return "no interval"
    estimated = interval.get("ends") in ESTIMATE_ENDS
    if interval.get("high") is not None:
        high = f"-{interval['high']:.1f} req/s"
    else:  # marginal steps may lie above: they are undecided, not failed
        high = " req/s and up" + ("" if estimated else " (no rate failed with confidence)")
    ends = ESTIMATE_ENDS[interval["ends"]] if estimated else f"each end decided at {interval['confidence'] * 100:g} %"
    return f"interval {interval['low']:.1f}{high} ({ends}; {interval_label(interval)})"


LIVE_S = 5.0  # what "now" means for a live figure


def recent(collector, span_s: float = LIVE_S) -> dict:
    """The last `span_s` seconds, for whoever watches (the live line, the web UI's tab): completions
    per second and the exact percentiles of the requests that ended in them (None where none did)."""
    s = collector.recent_samples()
    t = now()
    done = s[(s["end_s"] >= t - span_s) & (s["error"] == 0)]
    sent = s[s["sent_s"] >= t - span_s]

    def q(values: np.ndarray, p: float) -> float | None:
        return float(np.percentile(values, p)) if len(values) else None

    e2e = (done["end_s"] - done["scheduled_s"]) * 1000
    return {
        "achieved_rps": len(done) / span_s,
        "p50_ms": q(e2e, 50),
        "p95_ms": q(e2e, 95),
        "ttft_p95_ms": q((done["first_token_s"] - done["scheduled_s"]) * 1000, 95),
        "lateness_p99_ms": q((sent["sent_s"] - sent["scheduled_s"]) * 1000, 99),
        "in_flight": collector.in_flight(),
    }


class LiveLine:
    """Fixed mode: once a second, the last 5 s of offered/achieved rate, latency and lateness."""

    def __init__(self, collector, settings):
        self.collector = collector
        self.settings = settings

    def tick(self, info: dict) -> None:
        r = recent(self.collector)
        _p(
            f"[{now() - info['started']:5.0f}s] offered {info['offered_rps']:.1f}/s achieved {r['achieved_rps']:.1f}/s "
            f"in-flight {r['in_flight']} p50 {ms_text(r['p50_ms'])} p95 {ms_text(r['p95_ms'])} ms "
            f"TTFT p95 {ms_text(r['ttft_p95_ms'])} ms lateness p99 {ms_text(r['lateness_p99_ms'])} ms"
        )


class ProgressFile:
    """progress.json in the run directory, for `llmcap plan`'s status line (or anyone watching)."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.steps = 0
        self.last_p95_ms = None
        self.last_tick: dict = {}  # what the search is doing now (phase, offered_rps, window)

    def step_done(self, step: dict) -> None:
        self.steps += 1
        self.last_p95_ms = step.get("p95_ms")

    def tick(self, info: dict) -> None:
        self.last_tick = info
        write_progress(
            self.run_dir,
            {
                "step": self.steps,
                "phase": info["phase"],
                "offered_rps": info["offered_rps"],
                "last_p95_ms": self.last_p95_ms,
                "t": now(),
            },
        )
