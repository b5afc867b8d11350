"""llmcap's own view for Prometheus (`--prometheus-port`): what the load generator offers and what
it measured, as gauges of exact figures, never histograms (its percentiles are exact everywhere
else). Two windows: `live`, the last LIVE_S seconds, as the live line shows them; `step`, the last
step the search judged. Served by the process that runs the search (the master, distributed).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from llmcap.errors import BadInput
from loadtest.console import recent
from loadtest.run_state import RunState

# (metric, quantile) of each step field: its exact percentiles, in ms
STEP_LATENCY = {
    (metric, q): f"{prefix}p{q * 100:g}_ms"
    for metric, prefix in (("e2e", ""), ("ttft", "ttft_"), ("tpot", "tpot_"))
    for q in (0.5, 0.95, 0.99)
}
LIVE_LATENCY = {("e2e", 0.5): "p50_ms", ("e2e", 0.95): "p95_ms", ("ttft", 0.95): "ttft_p95_ms"}


class LoadView:
    """A prometheus_client collector over the run's state: read at each scrape, nothing stored."""

    def __init__(self, state: RunState):
        self.state = state

    def collect(self):
        if self.state.settings is None:  # scraped before the run is set up
            return
        run = self.state.settings.name
        live = recent(self.state.collector) if self.state.collector else {}
        step = self.state.steps[-1] if self.state.steps else {}
        yield from self._rates(run, live, step)
        yield self._latency(run, live, step)
        yield self._slo(run)
        yield from self._answer(run)

    def _rates(self, run: str, live: dict, step: dict):
        progress = self.state.progress
        offered = progress.last_tick.get("offered_rps") if progress and progress.last_tick else None
        if self.state.outcome is not None or self.state.done:
            offered = 0.0  # the run has its answer, or has stopped: nothing is offered any more
        yield _gauge("llmcap_offered_requests_per_second", "the rate the generator offers now", run, offered)
        achieved = GaugeMetricFamily(
            "llmcap_achieved_requests_per_second", "requests completed per second", labels=["run", "window"]
        )
        for window, value in (("live", live.get("achieved_rps")), ("step", step.get("achieved_rps"))):
            if value is not None:
                achieved.add_metric([run, window], value)
        yield achieved
        yield _gauge("llmcap_in_flight_requests", "requests sent and not yet answered", run, live.get("in_flight"))
        lateness = live.get("lateness_p99_ms")
        yield _gauge(
            "llmcap_send_lateness_p99_seconds",
            "p99 of how late requests left against their schedule, last seconds",
            run,
            None if lateness is None else lateness / 1000,
        )
        judged = CounterMetricFamily("llmcap_steps_judged", "steps the search has judged", labels=["run"])
        judged.add_metric([run], len(self.state.steps))
        yield judged

    def _latency(self, run: str, live: dict, step: dict) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "llmcap_latency_seconds",
            "exact percentiles, from the scheduled send time, of the requests of a window",
            labels=["run", "window", "metric", "quantile"],
        )
        for window, figures, fields in (("live", live, LIVE_LATENCY), ("step", step, STEP_LATENCY)):
            for (metric, q), field in fields.items():
                if figures.get(field) is not None:
                    family.add_metric([run, window, metric, f"{q:g}"], figures[field] / 1000)
        at_bounds = step.get("at_bounds") or {}
        for bound in self.state.settings.slo.latency_bounds():  # the SLO's own percentiles, p99.9 say
            q = bound.percentile / 100
            if (bound.metric, q) not in STEP_LATENCY and at_bounds.get(bound.key) is not None:
                family.add_metric([run, "step", bound.metric, f"{q:g}"], at_bounds[bound.key] / 1000)
        return family

    def _slo(self, run: str) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "llmcap_slo_limit_seconds", "each latency bound of the SLO", labels=["run", "metric", "quantile"]
        )
        for bound in self.state.settings.slo.latency_bounds():
            family.add_metric([run, bound.metric, f"{bound.percentile / 100:g}"], bound.limit_ms / 1000)
        return family

    def _answer(self, run: str):
        outcome = self.state.outcome
        family = GaugeMetricFamily(
            "llmcap_max_sustained_requests_per_second",
            "the search's answer and its interval's ends, once it has one",
            labels=["run", "end"],
        )
        if outcome is not None:
            ends = (("answer", outcome.max_sustained_rps), ("low", outcome.interval_low_rps))
            for end, value in (*ends, ("high", outcome.interval_high_rps)):
                if value is not None:
                    family.add_metric([run, end], value)
        yield family


def _gauge(name: str, documentation: str, run: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["run"])
    if value is not None:
        family.add_metric([run], value)
    return family


def serve(state: RunState, port: int, bind: str) -> CollectorRegistry:
    """/metrics on `bind`:`port`, in the background, for as long as the process runs."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoadView(state))
    try:
        start_http_server(port, addr=bind, registry=registry)
    except OSError as e:
        raise BadInput(
            f"--prometheus-port {port}, --prometheus-bind {bind}: cannot listen there ({e.strerror or e})"
        ) from None
    return registry
