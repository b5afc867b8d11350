"""Does the search find a server's true capacity, and does its interval contain it?

    .venv/bin/python benchmarks/search_accuracy.py --config many-slots --repeats 10
    .venv/bin/python benchmarks/search_accuracy.py --config few-slots --repeats 10

Against the stub server as an M/D/C queue (C slots, fixed service time S), whose steady-state
knee under Poisson arrivals is computed (tests/queueing.py: the rate at which the queue's p95
meets the SLO), repeated full searches with the profile's defaults, each with its own arrival
seed and a fresh server. For each: the maximum sustained rate found, its error against the
knee, its interval and whether the interval contains the knee, the steps and the wall time.
With `--simulate N`, N searches of the same server and settings run beside them in virtual time
(loadtest/simulated.py, the shipped search): each real answer's place among the simulated ones says
whether the real-time driver and the simulator agree (inside their 5-95 % range).
Results go to benchmarks/results/search-accuracy-<config>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from llmcap.profile import SearchParams, Slo  # noqa: E402
from loadtest.simulated import Server, simulate_search  # noqa: E402
from serving.cpu_support import cpu_model  # noqa: E402
from tests.conftest import LOCUST, start_stub, stop_process  # noqa: E402
from tests.queueing import rate_at_slo  # noqa: E402

# (slots, service ms, p95 SLO ms, start rate): the stub answers in one chunk after S
CONFIGS = {
    "many-slots": (16, 100.0, 300.0, 40.0),
    "few-slots": (4, 200.0, 600.0, 4.0),
    "c8": (8, 100.0, 300.0, 40.0),  # tests/test_search_e2e.py's real search (with its short windows)
}
STUB_OVERHEAD_S = 0.004  # the stub's own time per request on top of S (as the tests count it)


def one_search(slots: int, service_ms: float, slo_ms: float, start_rps: float, seed: int, extra: list[str]) -> dict:
    stub = start_stub()
    try:
        stub.configure(slots=slots, first_delay_ms=service_ms, chunks=1)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            cmd = [LOCUST, "-f", str(REPO / "loadtest" / "text2sql.py"), "--headless", "--only-summary"]
            cmd += ["-H", stub.url, "--run-dir", str(run_dir), "--no-report", "--slo-p95-ms", str(slo_ms)]
            cmd += ["--start-rps", str(start_rps), "--seed", str(seed), "--max-concurrency", "600", *extra]
            t0 = time.time()
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
            wall_s = time.time() - t0
            result = json.loads((run_dir / "result.json").read_text())
    finally:
        stop_process(stub.proc)
    steps = result["steps"]
    return {
        "seed": seed,
        "exit_code": run.returncode,
        "max_sustained_rps": result["max_sustained_rps"],
        "interval": result.get("max_sustained_rps_interval"),
        # with each step's exceedance counts, a change to the fitted answer can be replayed on them
        "steps": [
            (round(s["offered_rps"], 3), s["phase"], s.get("decision"), round(s["measured_s"], 1), s.get("exceedance"))
            for s in steps
        ],
        "wall_s": wall_s,
    }


def simulated(slots: int, service_ms: float, slo_ms: float, start_rps: float, extra: list[str], n: int) -> dict:
    """n searches of the same queue and settings in virtual time: their answers and 5-95 % range."""
    fields = {f.name for f in dataclasses.fields(SearchParams)}
    pairs = {k.lstrip("-").replace("-", "_"): v for k, v in zip(extra[::2], extra[1::2], strict=False)}
    params = SearchParams(start_rps=start_rps, **{k: float(v) for k, v in pairs.items() if k in fields})
    server, slo = Server(slots, service_ms / 1000, overhead_s=STUB_OVERHEAD_S), Slo(p95_ms=slo_ms)
    answers = sorted(simulate_search(server, params, slo, seed)[0].max_sustained_rps or 0.0 for seed in range(n))
    low, high = (float(np.quantile(answers, q)) for q in (0.05, 0.95))
    return {"searches": n, "answers": answers, "p5": low, "p95": high}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=CONFIGS, required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument(
        "--parallel", type=int, default=1, help="searches at once, each with its own stub (light loads: 2 fit 2 cores)"
    )
    ap.add_argument("--simulate", type=int, default=0, help="as many simulated searches of the same, to compare")
    ap.add_argument("extra", nargs="*", help="more Locust arguments for every search (after --)")
    args = ap.parse_args()
    slots, service_ms, slo_ms, start_rps = CONFIGS[args.config]
    knee = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=STUB_OVERHEAD_S)
    print(f"{args.config}: C={slots} S={service_ms:g} ms p95 <= {slo_ms:g} ms, steady-state knee {knee:.2f} req/s")
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(
            pool.map(
                lambda seed: one_search(slots, service_ms, slo_ms, start_rps, seed, args.extra), range(args.repeats)
            )
        )
    for r in runs:
        found, interval = r["max_sustained_rps"], r["interval"] or {}
        r["error"] = found / knee - 1 if found else None
        high = interval.get("high")
        r["covers_knee"] = bool(found) and interval.get("low", found) <= knee and (high is None or knee <= high)
        print(
            f"  seed {r['seed']}: {found} req/s ({r['error']:+.1%}), interval {interval.get('low')}-{high}, "
            f"covers {r['covers_knee']}, {len(r['steps'])} steps, {r['wall_s']:.0f} s"
            if found
            else f"  seed {r['seed']}: no rate found (exit {r['exit_code']}), {r['wall_s']:.0f} s"
        )
    errors = [r["error"] for r in runs if r["error"] is not None]
    summary = {
        "found": len(errors),
        "within_5_percent": sum(abs(e) <= 0.05 for e in errors),
        # the answer before 2026-11-30: the highest rate that passed with confidence
        "low_within_5_percent": sum(abs((r["interval"] or {}).get("low", 0) / knee - 1) <= 0.05 for r in runs),
        "error_min": min(errors, default=None),
        "error_max": max(errors, default=None),
        "spread": (
            max(r["max_sustained_rps"] for r in runs if r["max_sustained_rps"])
            / min(r["max_sustained_rps"] for r in runs if r["max_sustained_rps"])
            - 1
        )
        if errors
        else None,
        "covers_knee": sum(r["covers_knee"] for r in runs),
        "wall_s_median": sorted(r["wall_s"] for r in runs)[len(runs) // 2],
    }
    if args.simulate:
        sim = simulated(slots, service_ms, slo_ms, start_rps, args.extra, args.simulate)
        for r in runs:
            r["inside_simulated_5_95"] = (
                bool(r["max_sustained_rps"]) and sim["p5"] <= r["max_sustained_rps"] <= sim["p95"]
            )
        summary["simulated"] = sim
        summary["inside_simulated_5_95"] = sum(r["inside_simulated_5_95"] for r in runs)
        print(f"simulated: 5-95 % {sim['p5']:.2f}..{sim['p95']:.2f} req/s of {sim['answers']}")
    print(f"summary: {summary}")
    out = HERE / "results" / f"search-accuracy-{args.config}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "config": {"slots": slots, "service_ms": service_ms, "slo_p95_ms": slo_ms, "start_rps": start_rps},
                "knee_rps": knee,
                "machine": {
                    "cpu_model": cpu_model(),
                    "cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(),
                },
                "extra_args": args.extra,
                "parallel": args.parallel,
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
