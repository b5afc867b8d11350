"""What a person watching the run reads: one line per step, a live line per second in fixed mode."""

from __future__ import annotations

import math
import sys

import numpy as np

from llmcap.rundir import write_progress
from loadtest.clock import now


def _p(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _ms(value: float) -> str:
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
        f"achieved {step['achieved_rps']:8.2f}/s  p50 {_ms(step['p50_ms'])} p95 {_ms(step['p95_ms'])} "
        f"p99 {_ms(step['p99_ms'])} ms  TTFT p95 {_ms(step['ttft_p95_ms'])} ms  errors {errors}  "
        f"{verdict}: {step['reason']}" + (f"  [warning: {step['warning']}]" if step.get("warning") else "")
    )


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
        return [f"llmcap: fixed-rate run done; results in {settings.run_dir}/result.json"]
    if outcome.mode == "concurrency":
        return [
            f"llmcap: concurrency {step['concurrency']:>4}: {step['achieved_rps']:.2f} req/s, "
            f"p50 {_ms(step['p50_ms'])} p95 {_ms(step['p95_ms'])} ms, TTFT p95 {_ms(step['ttft_p95_ms'])} ms"
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


def interval_text(interval: dict | None) -> str:
    """'95 % interval 30.0-34.0 req/s': passed with that confidence at the low end, failed at the high."""
    if not interval:
        return "no interval"
    level = f"{interval['confidence'] * 100:g} %"
    if interval.get("high") is None:
        return f"{level} interval {interval['low']:.1f} req/s and up (no rate failed with {level} confidence)"
    return f"{level} interval {interval['low']:.1f}-{interval['high']:.1f} req/s"


class LiveLine:
    """Fixed mode: once a second, the last 5 s of offered/achieved rate, latency and lateness."""

    def __init__(self, collector, settings):
        self.collector = collector
        self.settings = settings

    def tick(self, info: dict) -> None:
        s = self.collector.recent_samples()
        t = now()
        span = 5.0
        done = s[(s["end_s"] >= t - span) & (s["error"] == 0)]
        sent = s[s["sent_s"] >= t - span]
        e2e = (done["end_s"] - done["scheduled_s"]) * 1000
        ttft = (done["first_token_s"] - done["scheduled_s"]) * 1000
        late = (sent["sent_s"] - sent["scheduled_s"]) * 1000

        def q(a, p):
            return _ms(float(np.percentile(a, p))) if len(a) else "-"

        _p(
            f"[{t - info['started']:5.0f}s] offered {info['offered_rps']:.1f}/s achieved {len(done) / span:.1f}/s "
            f"in-flight {self.collector.in_flight()} p50 {q(e2e, 50)} p95 {q(e2e, 95)} ms "
            f"TTFT p95 {q(ttft, 95)} ms lateness p99 {q(late, 99)} ms"
        )


class ProgressFile:
    """progress.json in the run directory, for `llmcap plan`'s status line (or anyone watching)."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.steps = 0
        self.last_p95_ms = None

    def step_done(self, step: dict) -> None:
        self.steps += 1
        self.last_p95_ms = step.get("p95_ms")

    def tick(self, info: dict) -> None:
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
