"""From one replica's max sustained rate to a fleet for a traffic forecast: one function, one rule.

    replicas(rate) = ceil(rate / (max sustained rate x target utilization)) + spare replicas

At least one replica serves at any rate. `target_utilization` is the headroom at peak: a replica
is loaded to that share of what it sustained under the SLO, so a burst above the forecast, or a
true maximum at the low end of its interval, does not break the SLO at once. `spare_replicas`
is N+1 (one replica can fail or be drained at peak).

Two ways to pay for it:
- a fixed fleet sized for the peak, paid every hour of the month;
- a fleet that follows a per-minute trace (ideal autoscaling: each minute has the replicas its
  rate needs), the floor of what autoscaling can save.
Effective $ per million requests = the month's GPU cost / the month's requests (at the average
rate), so idle capacity is in the price.
"""

from __future__ import annotations

import math
from pathlib import Path

from llmcap.errors import BadInput
from llmcap.profile import TrafficSettings
from llmcap.traces import read_counts

HOURS_PER_MONTH = 730.0  # 365 x 24 / 12
_DEFAULTS = TrafficSettings()  # the headroom policy's defaults live in the profile model


def replicas_for(rate_rps: float, max_sustained_rps: float, target_utilization: float, spare_replicas: int) -> int:
    serving = max(1, math.ceil(rate_rps / (max_sustained_rps * target_utilization) - 1e-9))
    return serving + spare_replicas


def read_trace(path: str | Path) -> list[float]:
    """Requests per minute, one minute per row (llmcap/traces.py: a count per line, or a 'requests'
    column); a bad row is named by file and line (exit 2)."""
    return read_counts(path)


def fleet_plan(
    max_sustained_rps: float,
    gpus_per_replica: int,
    usd_per_gpu_hour: float,
    *,
    peak_rps: float | None = None,
    average_rps: float | None = None,
    per_minute: list[float] | None = None,
    target_utilization: float = _DEFAULTS.target_utilization,
    spare_replicas: int = _DEFAULTS.spare_replicas,
    max_sustained_rps_low: float | None = None,
) -> dict:
    """The fleet one variant needs for a forecast: a peak and an average rate, a per-minute trace,
    or both (given rates win over the trace's). `max_sustained_rps_low`: the low end of the rate's
    interval, for the count that holds if the true maximum lies there."""
    trace_rps = [count / 60.0 for count in per_minute] if per_minute else None
    peak = peak_rps if peak_rps is not None else (max(trace_rps) if trace_rps else None)
    if peak is None:
        raise BadInput("traffic: give a peak_rps or a trace")
    average = average_rps if average_rps is not None else (sum(trace_rps) / len(trace_rps) if trace_rps else peak)

    def replicas(rate: float, capacity_rps: float = max_sustained_rps) -> int:
        return replicas_for(rate, capacity_rps, target_utilization, spare_replicas)

    at_peak = replicas(peak)
    monthly_usd = at_peak * gpus_per_replica * usd_per_gpu_hour * HOURS_PER_MONTH
    requests_per_month = average * 3600.0 * HOURS_PER_MONTH
    out: dict = {
        "peak_rps": peak,
        "average_rps": average,
        "target_utilization": target_utilization,
        "spare_replicas": spare_replicas,
        "replicas_at_peak": at_peak,
        "gpus_at_peak": at_peak * gpus_per_replica,
        "replicas_at_peak_if_rate_is_low": replicas(peak, max_sustained_rps_low) if max_sustained_rps_low else None,
        "fixed_fleet_usd_per_month": monthly_usd,
        "fixed_fleet_usd_per_million_requests": monthly_usd / requests_per_month * 1e6 if average > 0 else None,
        "average_utilization": average / (at_peak * max_sustained_rps),
    }
    if trace_rps:
        by_minute = [replicas(rate) for rate in trace_rps]
        gpu_hours = sum(by_minute) * gpus_per_replica / 60.0
        trace_hours = len(trace_rps) / 60.0
        trace_requests = sum(per_minute or [])
        out["trace"] = {
            "minutes": len(trace_rps),
            "replicas_by_minute": by_minute,
            "rps_by_minute": list(trace_rps),
            "gpu_hours": gpu_hours,
            "usd_per_month": gpu_hours * usd_per_gpu_hour * HOURS_PER_MONTH / trace_hours,
            "usd_per_million_requests": gpu_hours * usd_per_gpu_hour / trace_requests * 1e6 if trace_requests else None,
        }
    return out


def cheapest(fleets: dict[str, dict | None], eligible: set[str]) -> str | None:
    """The eligible variant (held the SLO, kept the answers) whose fleet costs least per month."""

    def monthly(f: dict) -> float:
        return f["trace"]["usd_per_month"] if "trace" in f else f["fixed_fleet_usd_per_month"]

    priced = {name: monthly(f) for name, f in fleets.items() if f is not None and name in eligible}
    return min(priced, key=lambda name: priced[name]) if priced else None
