"""How often is a step's verdict wrong, and what does that do to whole searches? By simulation.

    .venv/bin/python benchmarks/verdict_calibration.py --config few-slots
    .venv/bin/python benchmarks/verdict_calibration.py --config many-slots --verdict batch-means-only

No server: the shipped step and search (`loadtest.search.run_step`, `run_search`) run in virtual time
against a simulated M/D/C queue (loadtest/simulated.py: C slots, a fixed service time S, 4 ms of
overhead as the stub's, Poisson arrivals), with every wait, look, drain and check a real run has.
Time is simulated, so a thousand steps take seconds.

Two measurements, against the true knee (the rate at which the long-run fraction of 10^6 requests
over the p95 bound reaches 5 %):
- steps: at rates from 0.90 to 1.10 of the knee, the share of bisection steps (the profile's
  windows, warm-up from an empty queue) that pass, fail and end marginal. A 95 % verdict may pass
  at most 5 % of steps at or above the knee;
- searches: whole searches with the profile's default windows (or `--step-seconds`,
  `--max-step-seconds`, ...): the answer's error against the knee, how many land within 5 %, how
  many intervals contain the knee, and the simulated time. The answer is llmcap's
  (`knee_estimate`, inside the interval); beside it, the interval's low end (the highest rate
  that passed with confidence).

`--verdict batch-means-only` judges without counting clusters (theta = 1: the verdict before
llmcap.confidence counted them), `--verdict autocorrelation` also credits no more independent
requests than the latencies' autocorrelation time allows (tried, not adopted), for comparison. Results go to
benchmarks/results/verdict-calibration-<config>-<verdict>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from llmcap import confidence  # noqa: E402
from llmcap.profile import SearchParams, Slo  # noqa: E402
from loadtest import search as search_module  # noqa: E402
from loadtest.search import BISECT, knee_estimate, run_step, window_seconds  # noqa: E402
from loadtest.simulated import Server, SimulatedLoad, knee_rps, simulate_search  # noqa: E402
from tests.queueing import rate_at_slo  # noqa: E402

# (slots, service ms, p95 SLO ms, start rate): benchmarks/search_accuracy.py's settings
CONFIGS = {
    "many-slots": (16, 100.0, 300.0, 40.0),
    "few-slots": (4, 200.0, 600.0, 4.0),
}
RATES = [0.90, 0.94, 0.97, 1.00, 1.03, 1.06, 1.10]
KNEE_REQUESTS = 1_000_000
REQUEST_TIMEOUT_S = 60.0


def true_knee(config: str) -> float:
    slots, service_ms, slo_ms, _ = CONFIGS[config]
    guess = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=0.004)
    return knee_rps(Server(slots, service_ms / 1000), slo_ms / 1000, 0.05, KNEE_REQUESTS, 0.8 * guess, 1.05 * guess)


def steps_at(args) -> dict:
    config, verdict, knee, relative, reps, windows = args
    params = SearchParams(**windows)
    slots, service_ms, slo_ms, _ = CONFIGS[config]
    slo = Slo(p95_ms=slo_ms)
    min_s, max_s = window_seconds(params, slo, knee * relative, BISECT)
    found = []
    with _verdict(verdict):
        for rep in range(reps):
            load = SimulatedLoad(Server(slots, service_ms / 1000), seed=int(relative * 1000) * 10_000 + rep)
            step = run_step(
                load, knee * relative, min_s, max_s, params.warmup_seconds, slo, params.confidence,
                REQUEST_TIMEOUT_S, params.max_lateness_ms, BISECT,
            )  # fmt: skip
            found.append({"pass": "pass", "fail": "fail"}.get(step["decision"], "marginal"))
    return {"relative_rate": relative, **{d: found.count(d) / reps for d in ("pass", "fail", "marginal")}}


def search(args) -> dict:
    config, verdict, knee, seed, windows = args
    slots, service_ms, slo_ms, start_rps = CONFIGS[config]
    params, slo = SearchParams(start_rps=start_rps, **windows), Slo(p95_ms=slo_ms)
    with _verdict(verdict):
        outcome, seconds = simulate_search(Server(slots, service_ms / 1000), params, slo, seed)
    best, high = outcome.interval_low_rps, outcome.interval_high_rps
    answer = outcome.max_sustained_rps
    if best is not None and not FIT_EFFECTIVE:
        # weighed by all its requests (the method before): as if every one were independent
        as_if = [{**s, "exceedance": [{**e, "effective_n": e["n"]} for e in s["exceedance"]]} for s in outcome.steps]
        answer = knee_estimate(as_if, best, high).rps
    counts = [
        (s["offered_rps"], e["over"], e["n"], e["effective_n"]) for s in outcome.steps for e in s["exceedance"][:1]
    ]
    return {
        "seed": seed,
        "max_sustained_rps": answer,
        "interval_low_rps": best,
        "interval_high_rps": high,
        "error": (answer or 0.0) / knee - 1,
        "low_error": (best or 0.0) / knee - 1,
        "step_counts": counts,  # (rate, over, n, effective n) of each step's p95 bound, in the order run
        "decisions": [s["decision"] for s in outcome.steps],
        "covers_knee": best is not None and best <= knee and (high is None or high >= knee),
        "simulated_s": seconds,
    }


def autocorrelation_time(values: np.ndarray) -> float:
    """The integrated autocorrelation time of the series, 1 + 2 * sum of its autocorrelations, summed
    up to Sokal's automatic window (the first lag m >= 5 tau(m)); at least 1. Requests known only to
    be over count at the largest finite latency."""
    finite = values[np.isfinite(values)]
    if len(finite) < 20:
        return 1.0
    x = np.where(np.isfinite(values), values, finite.max()) - finite.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    acov = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    if acov[0] <= 0:
        return 1.0
    rho, tau = acov / acov[0], 1.0
    for m in range(1, n):
        tau += 2 * rho[m]
        if m >= 5 * tau:
            break
    return max(tau, 1.0)


class _verdict:
    """The shipped verdict; the one without the cluster count (theta = 1); or one that also credits
    no more independent requests than the latencies' autocorrelation time allows (tried, not adopted:
    benchmarks/README.md)."""

    def __init__(self, name: str):
        shipped = confidence.extremal_index
        replacement = {
            "batch-means-only": lambda *a: 1.0,
            "autocorrelation": lambda values, level: min(shipped(values, level), 1 / autocorrelation_time(values)),
        }.get(name)
        self.patch = mock.patch.object(confidence, "extremal_index", replacement) if replacement else None

    def __enter__(self):
        if self.patch:
            self.patch.start()

    def __exit__(self, *exc):
        if self.patch:
            self.patch.stop()


FIT_EFFECTIVE = True  # knee_estimate weighs each step by its independent requests; False: by all of them


def _configure_worker(doublings: int, fit_effective: bool = True) -> None:
    global FIT_EFFECTIVE
    search_module.EXTRA_DOUBLINGS = doublings  # read at each call (extra_looks, window_seconds)
    FIT_EFFECTIVE = fit_effective


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=CONFIGS, default="few-slots")
    ap.add_argument("--verdict", choices=["shipped", "batch-means-only", "autocorrelation"], default="shipped")
    ap.add_argument("--steps", type=int, default=200, help="steps per rate")
    ap.add_argument("--searches", type=int, default=60)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument(
        "--extra-doublings",
        type=int,
        default=search_module.EXTRA_DOUBLINGS,
        help="looks past the longest window for a step far under its bounds (0: none, the method before)",
    )
    ap.add_argument(
        "--fit-all-requests",
        action="store_true",
        help="knee_estimate weighs a step by all its requests, not its independent ones (the method before)",
    )
    ap.add_argument("--step-seconds", type=float, help="the searches' shortest window (default: the profile's)")
    ap.add_argument("--max-step-seconds", type=float, help="the searches' longest window (default: the profile's)")
    ap.add_argument("--confirm-seconds", type=float, help="the confirmation's shortest window (default: the profile's)")
    ap.add_argument("--warmup-seconds", type=float, help="the searches' lead-in per step (default: the profile's)")
    ap.add_argument("--precision", type=float, help="the searches' bisection precision (default: the profile's)")
    ap.add_argument("--no-steps", action="store_true", help="whole searches only")
    args = ap.parse_args()
    search_settings = ("step_seconds", "max_step_seconds", "confirm_seconds", "warmup_seconds", "precision")
    windows = {k: v for k in search_settings if (v := getattr(args, k)) is not None}
    slots, service_ms, slo_ms, _ = CONFIGS[args.config]
    knee = true_knee(args.config)
    print(f"{args.config}: C={slots} S={service_ms:g} ms p95 <= {slo_ms:g} ms, knee {knee:.2f} req/s, {args.verdict}")
    with ProcessPoolExecutor(
        args.parallel, initializer=_configure_worker, initargs=(args.extra_doublings, not args.fit_all_requests)
    ) as pool:
        todo = [] if args.no_steps else RATES
        steps = list(pool.map(steps_at, [(args.config, args.verdict, knee, r, args.steps, windows) for r in todo]))
        for s in steps:
            shares = f"pass {s['pass']:.0%} fail {s['fail']:.0%} marginal {s['marginal']:.0%}"
            print(f"  step at {s['relative_rate']:.2f} x knee: {shares}")
        searches = list(
            pool.map(search, [(args.config, args.verdict, knee, 1000 + i, windows) for i in range(args.searches)])
        )
    errors = np.array([s["error"] for s in searches])
    low_errors = np.array([s["low_error"] for s in searches])
    summary = {
        "searches": len(searches),
        "found_none": sum(s["max_sustained_rps"] is None for s in searches),
        "within_5_percent": int(np.sum(np.abs(errors) <= 0.05)),
        "low_within_5_percent": int(np.sum(np.abs(low_errors) <= 0.05)),
        "low_error_median": float(np.median(low_errors)),
        "error_sd": float(errors.std()),
        "error_median": float(np.median(errors)),
        "error_min": float(errors.min()),
        "error_max": float(errors.max()),
        "covers_knee": sum(s["covers_knee"] for s in searches),
        "simulated_s_median": float(np.median([s["simulated_s"] for s in searches])),
    }
    print(f"  searches: {summary}")
    out = {
        "config": args.config,
        "verdict": args.verdict,
        "extra_doublings": args.extra_doublings,
        "fit_weights": "all requests" if args.fit_all_requests else "independent requests",
        "windows": windows,
        "knee_rps": knee,
        "knee": f"long-run fraction over the p95 bound at 5 %, {KNEE_REQUESTS} simulated requests",
        "code": "the shipped run_step / run_search on loadtest.simulated (virtual clock)",
        "step_shares": steps,
        "summary": summary,
    }
    out["searches"] = searches
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    name = f"{args.config}-{args.verdict}" + (f"-extra{args.extra_doublings}" if args.extra_doublings != 2 else "")
    name += "-fitall" if args.fit_all_requests else ""
    name += "".join(f"-{k.split('_')[0]}{v:g}" for k, v in windows.items())
    path = HERE / "results" / f"verdict-calibration-{name}-{stamp}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
