"""How often does the estimator's interval hold the true knee, how wide is it, how long does it take?

    .venv/bin/python benchmarks/estimate_calibration.py [--searches 200] [--parallel 2]

No server: the shipped estimator (`loadtest.estimate.run_estimate`, `--search-method estimate`) runs
in virtual time against the simulated servers of tests/test_search_sim.py (M/D/C few and many slots,
M/G/C, a server whose speed wanders by the minute), with the profile's defaults (10-s chunks, 5-s
settling, +-5 % requested half-width, a 300-s budget). Two sets of seeds: the label is fixed on the
first (calibration) and checked on the second. Results go to
benchmarks/results/estimate-calibration-<UTC time>.json; llmcap.confidence.ESTIMATE_INTERVAL_COVERAGE
is the calibration seeds' count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from llmcap.profile import Slo  # noqa: E402
from loadtest.simulated import simulate_search  # noqa: E402
from tests.test_search_sim import SETTINGS, WANDERING, true_knee  # noqa: E402

NAMES = {"few-slots": SETTINGS["few-slots"], "many-slots": SETTINGS["many-slots"]}
NAMES |= {"service-cv-0.5": SETTINGS["service-cv-0.5"], "wandering": WANDERING}
CALIBRATION_SEEDS, CHECK_SEEDS_FROM = 0, 10_000


def one(args) -> dict:
    name, seed, knee = args
    setting = NAMES[name]
    params = dataclasses.replace(setting.params, method="estimate")
    outcome, seconds = simulate_search(setting.server, params, Slo(p95_ms=setting.slo_ms), seed, setting.arrival)
    low, high = outcome.interval_low_rps, outcome.interval_high_rps
    answer = outcome.max_sustained_rps or 0.0
    return {
        "seed": seed,
        "max_sustained_rps": answer,
        "interval": [low, high],
        "error": answer / knee - 1,
        "half_width": ((high or np.inf) - (low or 0.0)) / 2 / answer if answer else np.inf,
        "held": low is not None and low <= knee and (high is None or knee <= high),
        "converged": outcome.confirmed,
        "chunks": len(outcome.steps),
        "simulated_s": seconds,
    }


def summary(rows: list[dict]) -> dict:
    errors = np.array([r["error"] for r in rows])
    return {
        "searches": len(rows),
        "held": sum(r["held"] for r in rows),
        "converged": sum(r["converged"] for r in rows),
        "median_error": float(np.median(errors)),
        "median_abs_error": float(np.median(np.abs(errors))),
        "median_half_width": float(np.median([r["half_width"] for r in rows])),
        "median_simulated_s": float(np.median([r["simulated_s"] for r in rows])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--searches", type=int, default=200, help="per setting and seed set")
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    out: dict = {"cpu": platform.processor() or platform.machine(), "settings": {}}
    with ProcessPoolExecutor(args.parallel) as pool:
        for name, setting in NAMES.items():
            knee = true_knee(setting)
            per_set = {}
            for label, first in (("calibration", CALIBRATION_SEEDS), ("check", CHECK_SEEDS_FROM)):
                todo = [(name, seed, knee) for seed in range(first, first + args.searches)]
                rows = list(pool.map(one, todo))
                per_set[label] = {"summary": summary(rows), "searches": rows}
                s = per_set[label]["summary"]
                print(
                    f"{name:15s} {label:11s} knee {knee:7.2f}: held {s['held']}/{s['searches']}, "
                    f"converged {s['converged']}, median error {s['median_error']:+.3f}, "
                    f"|error| {s['median_abs_error']:.3f}, half-width {s['median_half_width']:.3f}, "
                    f"time {s['median_simulated_s']:.0f} s",
                    flush=True,
                )
            out["settings"][name] = {"knee_rps": knee, **per_set}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = HERE / "results" / f"estimate-calibration-{stamp}.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"written {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
