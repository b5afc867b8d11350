"""The closed loop: the other view of one server. Keep N requests open (each finished one replaced at
once) for a while at each level of a sweep and report what the server made of it: throughput,
latency, TTFT per level. "At concurrency 64 it does X" is how vLLM's, AIPerf's and GuideLLM's users
describe a server; the rate search answers the planner's question, this one the engineer's.

Each level is one fixed-length step (search.run_step, phase CLOSED), judged against the SLO once,
as a fixed-rate run is; nothing here decides a capacity.
"""

from __future__ import annotations

from collections.abc import Callable

from llmcap.profile import Slo
from loadtest.search import CLOSED, Load, SearchOutcome, run_step


def parse_levels(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; a ValueError naming what is wrong otherwise."""
    try:
        levels = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--concurrency takes whole numbers separated by commas (e.g. 1,4,16), not {text!r}") from None
    if not levels or min(levels) < 1:
        raise ValueError(f"--concurrency needs levels of at least 1 (got {text!r})")
    return levels


def run_levels(
    load: Load,
    levels: list[int],
    duration_s: float,
    warmup_s: float,
    slo: Slo,
    confidence: float,
    request_timeout_s: float,
    max_lateness_ms: float,
    on_step: Callable[[dict], None] = lambda step: None,
    on_tick: Callable[[dict], None] | None = None,
) -> SearchOutcome:
    steps: list[dict] = []
    for n in levels:
        step = run_step(
            load,
            0.0,
            duration_s,
            duration_s,
            warmup_s,
            slo,
            confidence,
            request_timeout_s,
            max_lateness_ms,
            CLOSED,
            on_tick,
            concurrency=n,
        )
        step["index"] = len(steps)
        steps.append(step)
        on_step(step)
        if step["generator_bottleneck"]:
            return SearchOutcome(steps, None, None, False, step["reason"], mode="concurrency", confidence=confidence)
    return SearchOutcome(steps, None, None, False, mode="concurrency", confidence=confidence)
