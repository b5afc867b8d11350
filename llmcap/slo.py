"""Latency bounds as users write them: a latency at a percentile, at most so many ms.

A bound's key names all three, `ttft_p99_ms`: the latency (`e2e` end to end, `ttft` time to
first token, `tpot` time per output token after the first, each request's own, as vLLM's
`bench serve` and MLPerf's LoadGen define it), the percentile (p50 to p99.9) and the unit. A
spec is such bounds as `KEY=MS` pairs or preset names, comma-separated, later ones overriding
(`mlperf-llama3.1-8b-server,e2e_p95_ms=5000`). A bottom-layer module: it imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
import math
import re

__all__ = ["Bound", "parse_bounds", "bound_key", "PRESETS", "DEFAULT_SPEC", "METRICS"]

METRICS = {"e2e": "", "ttft": "TTFT ", "tpot": "TPOT "}  # the order bounds are listed and judged in
LOWEST_PERCENTILE, HIGHEST_PERCENTILE = 50.0, 99.9
DEFAULT_SPEC = "e2e_p95_ms=1000"
ALWAYS_SHOWN = ("e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms", "ttft_p95_ms")  # every step line and table has these
KEY = re.compile(r"^(e2e|ttft|tpot)_p(\d+(?:\.\d+)?)_ms$")

# MLPerf Inference datacenter LLM limits, p99 TTFT and p99 TPOT (mlcommons/inference_policies
# inference_rules.adoc ac93e89, loadgen/mlperf.conf b66003e); GPT-OSS-120B's interactive TPOT is
# left out: the rules say 20 ms, mlperf.conf 15
PRESETS = {
    "mlperf-llama3.1-8b-server": "ttft_p99_ms=2000,tpot_p99_ms=100",
    "mlperf-llama3.1-8b-interactive": "ttft_p99_ms=500,tpot_p99_ms=30",
    "mlperf-llama2-70b-server": "ttft_p99_ms=2000,tpot_p99_ms=200",
    "mlperf-llama2-70b-interactive": "ttft_p99_ms=450,tpot_p99_ms=40",
    "mlperf-llama3.1-405b-server": "ttft_p99_ms=6000,tpot_p99_ms=175",
    "mlperf-llama3.1-405b-interactive": "ttft_p99_ms=4500,tpot_p99_ms=80",
    "mlperf-deepseek-r1-server": "ttft_p99_ms=2000,tpot_p99_ms=80",
    "mlperf-deepseek-r1-interactive": "ttft_p99_ms=1500,tpot_p99_ms=15",
    "mlperf-gpt-oss-120b-server": "ttft_p99_ms=3000,tpot_p99_ms=80",
    "mlperf-mixtral-8x7b-server": "ttft_p99_ms=2000,tpot_p99_ms=200",
}


@dataclasses.dataclass(frozen=True)
class Bound:
    metric: str  # e2e, ttft or tpot
    percentile: float
    limit_ms: float

    @property
    def key(self) -> str:
        return bound_key(self.metric, self.percentile)

    @property
    def name(self) -> str:
        return bound_name(self.key)

    @property
    def allowed_fraction(self) -> float:
        """The share of requests that may be over the limit: 5 % for a p95."""
        return round(1 - self.percentile / 100, 6)

    def describe(self, le: str = "<=") -> str:
        return f"{self.name} {le} {self.limit_ms:g} ms"


def bound_key(metric: str, percentile: float) -> str:
    return f"{metric}_p{percentile:g}_ms"


def bound_name(key: str) -> str:
    """'TTFT p99' for ttft_p99_ms, 'p95' for e2e_p95_ms."""
    metric, percentile = parse_key(key)
    return f"{METRICS[metric]}p{percentile:g}"


def parse_key(key: str) -> tuple[str, float]:
    """(metric, percentile) of a bound's key; ValueError saying what a key looks like."""
    match = KEY.match(key)
    if not match:
        raise ValueError(f"{key!r} is not a bound: expected e2e, ttft or tpot, a percentile and ms, e.g. tpot_p99_ms")
    percentile = float(match.group(2))
    if not LOWEST_PERCENTILE <= percentile <= HIGHEST_PERCENTILE:
        raise ValueError(
            f"{key}: the percentile must be from p{LOWEST_PERCENTILE:g} to p{HIGHEST_PERCENTILE:g} "
            "(p99.9, not p999), got p" + match.group(2)
        )
    return match.group(1), percentile


def make_bound(key: str, limit_ms) -> Bound:
    metric, percentile = parse_key(key)
    if isinstance(limit_ms, bool) or not isinstance(limit_ms, (int, float)) or not 0 < limit_ms < math.inf:
        raise ValueError(f"{key}: expected a number of ms > 0, got {limit_ms!r}")
    return Bound(metric, percentile, float(limit_ms))


def parse_bounds(spec: str) -> dict[str, Bound]:
    """The bounds a spec sets, by key; ValueError naming the item that is not one."""
    found: dict[str, Bound] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item in PRESETS:
            found |= parse_bounds(PRESETS[item])
            continue
        key, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"{item!r}: expected KEY=MS (e.g. ttft_p99_ms=2000) or a preset: {', '.join(PRESETS)}")
        try:
            limit = float(value)
        except ValueError:
            raise ValueError(f"{key.strip()}: expected a number of ms, got {value.strip()!r}") from None
        bound = make_bound(key.strip(), limit)
        found[bound.key] = bound
    return found


def ordered(bounds) -> list[Bound]:
    """Bounds in the order they are listed and judged: end to end, TTFT, TPOT, each by percentile."""
    order = list(METRICS)
    return sorted(bounds, key=lambda b: (order.index(b.metric), b.percentile))
