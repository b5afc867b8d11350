"""Locust's web UI, with an llmcap tab: `locust -f loadtest/text2sql.py -H URL` without --headless.

Locust's own Start button runs what the arguments ask (the rate search, a fixed rate, or the closed
loop). The llmcap tab, through Locust's documented extension points (template_args' extended_tabs and
extended_tables, and extended_stats in each /stats/requests poll, as examples/extend_web_ui.py does),
shows the last seconds against the SLO, every step as it is judged, and the answer; the report is
linked from the Download Data tab and served at /llmcap/report once written. One search per
process: start locust again for another.
"""

from __future__ import annotations

import json

from flask import Response, request

from llmcap.rundir import RESULT_FILE
from loadtest.console import LIVE_S, final_text, ms_text, recent, verdict_of
from loadtest.run_state import state_of

TAB = "llmcap"
COLUMNS = [
    ("step", "Step"),
    ("phase", "Phase"),
    ("offered", "Offered req/s"),
    ("achieved", "Achieved req/s"),
    ("p95", "p95 ms"),
    ("ttft_p95", "TTFT p95 ms"),
    ("verdict", "Verdict"),
    ("reason", "Why"),
]


def _slo_of(limits: dict, key: str) -> str:
    return f" (SLO {limits[key]:g})" if key in limits else ""


def rows(state) -> list[dict]:
    """The tab's table: the live line, each judged step, and the answer when there is one."""
    settings = state.settings
    out = []
    if state.controller is not None and not state.done:  # started, not finished
        live = recent(state.collector)
        limits = {b.key: b.limit_ms for b in settings.slo.latency_bounds()}
        out.append(
            {
                "step": "live",
                "phase": f"last {LIVE_S:g} s",
                "offered": "",
                "achieved": f"{live['achieved_rps']:.1f}",
                "p95": ms_text(live["p95_ms"]) + _slo_of(limits, "e2e_p95_ms"),
                "ttft_p95": ms_text(live["ttft_p95_ms"]) + _slo_of(limits, "ttft_p95_ms"),
                "verdict": "",
                "reason": f"{live['in_flight']} requests in flight",
            }
        )
    for step in state.steps:
        out.append(
            {
                "step": str(step["index"]),
                "phase": step["phase"] + (f" n={step['concurrency']}" if step.get("concurrency") else ""),
                "offered": f"{step['offered_rps']:.2f}",
                "achieved": f"{step['achieved_rps']:.2f}",
                "p95": ms_text(step["p95_ms"]),
                "ttft_p95": ms_text(step["ttft_p95_ms"]),
                "verdict": verdict_of(step),
                "reason": step["reason"],
            }
        )
    if state.outcome is not None:
        out.append(
            {
                "step": "answer",
                "phase": "",
                "offered": "",
                "achieved": "",
                "p95": "",
                "ttft_p95": "",
                "verdict": "",
                "reason": final_text(state.outcome, settings) + " Report: /llmcap/report",
            }
        )
    return out


def install(environment) -> None:
    """Add the llmcap tab and its routes to a running web UI (the master's, or the local runner's)."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    state = state_of(environment)
    web_ui.template_args["extended_tabs"] = [{"title": "llmcap", "key": TAB}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
    ]
    web_ui.template_args["extended_csv_files"] = [{"href": "./llmcap/report", "title": "llmcap capacity report"}]
    app = web_ui.app

    @app.after_request
    def _llmcap_stats(response: Response) -> Response:
        if request.path.rstrip("/").endswith("/stats/requests") and response.is_json and state.settings:
            body = response.get_json()
            body["extended_stats"] = [{"key": TAB, "data": rows(state)}]
            response.set_data(json.dumps(body))
        return response

    @app.route("/llmcap/status")
    def _llmcap_status() -> Response:
        return Response(json.dumps({"done": state.done, "rows": rows(state)}), mimetype="application/json")

    @app.route("/llmcap/report")
    def _llmcap_report() -> Response:
        report = state.settings.run_dir / "report.html" if state.settings else None
        if report is None or not report.is_file():
            waiting = "the search is still running" if not state.done else "no report was written"
            return Response(f"llmcap: no report yet ({waiting}); results go to {RESULT_FILE}", status=404)
        return Response(report.read_text(), mimetype="text/html")
