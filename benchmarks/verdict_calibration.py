"""How often is a step's verdict wrong, and what does that do to whole searches? By simulation.

    .venv/bin/python benchmarks/verdict_calibration.py --config few-slots
    .venv/bin/python benchmarks/verdict_calibration.py --config many-slots --verdict batch-means-only

No server: an M/D/C queue (C slots, a fixed service time S, 4 ms of overhead as the stub's) is
simulated request by request under Poisson arrivals, and judged by llmcap's own code: the verdict
(`loadtest.stats.look`, on samples laid out as the load generator writes them), the looks and
windows (`pass_looks`, `fail_looks`, `look_levels`, `window_seconds`) and
the rate search (`RateSearch`). Time is simulated, so a thousand steps take seconds.

Two measurements:
- steps: at rates from 0.90 to 1.10 of the knee (the rate at which the queue's steady-state p95
  meets the SLO), the share of bisection steps (20-s shortest, 40-s longest window, 5-s warm-up
  from an empty queue) that pass, fail and end marginal. A 95 % verdict may pass at most 5 % of
  steps at or above the knee;
- searches: whole searches with the profile's default windows (or `--step-seconds`,
  `--max-step-seconds`, ...): the answer's error against the knee, how many land within 5 %, how
  many intervals contain the knee, and the simulated time. The answer is llmcap's
  (`knee_estimate`, inside the interval); beside it, the interval's low end (the highest rate
  that passed with confidence), which was the answer before 2026-11-30.

`--verdict batch-means-only` judges without counting clusters (theta = 1: the verdict before
llmcap.confidence counted them), `--verdict autocorrelation` also credits no more independent
requests than the latencies' autocorrelation time allows (tried, not adopted), for comparison. Results go to
benchmarks/results/verdict-calibration-<config>-<verdict>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
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
from llmcap.confidence import PASS  # noqa: E402
from llmcap.profile import SearchParams, Slo  # noqa: E402
from llmcap.rundir import SAMPLE_DTYPE  # noqa: E402
from loadtest import search as search_module  # noqa: E402
from loadtest.search import (  # noqa: E402
    RateSearch,
    extra_looks,
    fail_looks,
    far_under,
    knee_estimate,
    look_levels,
    pass_looks,
    stops_now,
    window_seconds,
)
from loadtest.stats import look  # noqa: E402
from tests.queueing import rate_at_slo  # noqa: E402

# (slots, service ms, p95 SLO ms, start rate): benchmarks/search_accuracy.py's settings
CONFIGS = {
    "many-slots": (16, 100.0, 300.0, 40.0),
    "few-slots": (4, 200.0, 600.0, 4.0),
}
OVERHEAD_S = 0.004
RATES = [0.90, 0.94, 0.97, 1.00, 1.03, 1.06, 1.10]


def queue(rate: float, slots: int, service_s: float, seconds: float, rng) -> np.ndarray:
    """Samples of Poisson arrivals at a FIFO M/D/C queue, empty at time 0."""
    gaps = rng.exponential(1 / rate, int(rate * seconds * 1.3) + 50)
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < seconds]
    free = [0.0] * slots
    samples = np.zeros(len(arrivals), dtype=SAMPLE_DTYPE)
    for i, t in enumerate(arrivals):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service_s)
        samples[i]["end_s"] = start + service_s + OVERHEAD_S
    samples["scheduled_s"] = samples["issued_s"] = samples["sent_s"] = arrivals
    samples["first_token_s"] = samples["end_s"]  # one chunk: the first token is the answer
    return samples


def step(rate: float, slots: int, service_s: float, slo: Slo, min_s: float, max_s: float, rng, warmup_s=5.0):
    """One sequential step as run_step runs it, in simulated time: (decision, seconds it took,
    (over, n) of the p95 bound in the largest window it judged)."""
    passes, extra = pass_looks(min_s, max_s), extra_looks(max_s)
    samples = queue(rate, slots, service_s, warmup_s + (extra or [max_s])[-1] + 10, rng)
    known_after = slo.p95_ms / 1000
    start = warmup_s
    fails = [start + s for s in fail_looks(max_s + known_after, min_s + known_after)]
    pass_conf, fail_conf = look_levels(0.95, len(passes) + len(extra), len(fails))
    counted = (0, 0, 0.0)

    def judge(t: float, end: float, level: float):
        nonlocal counted
        finished = samples[samples["end_s"] <= t]
        open_scheduled = samples["scheduled_s"][(samples["end_s"] > t) & (samples["scheduled_s"] <= t)]
        verdict = look(finished, open_scheduled, t, start, end, slo, level)
        e = verdict.exceedances[0]
        counted = max(counted, (e.over, e.n, e.effective_n), key=lambda c: c[1])
        return verdict

    while True:
        t = min(fails[0] if fails else math.inf, start + passes[0] + known_after)
        if fails and t >= fails[0]:
            fails.pop(0)
            failing = judge(t, start + max_s, fail_conf)
            if stops_now(failing, failing.cut_s - start, min_s):
                return "fail", t, counted
        if t >= start + passes[0] + known_after:
            verdict = judge(t, start + passes[0], pass_conf)
            if verdict.decision == PASS:
                return "pass", t, counted
            if len(passes) == 1:
                if extra and far_under(verdict):
                    passes = [extra.pop(0)]
                    continue
                return "marginal", t, counted
            passes.pop(0)


def steps_at(args) -> dict:
    config, verdict, relative, reps, windows = args
    params = SearchParams(**windows)
    slots, service_ms, slo_ms, _ = CONFIGS[config]
    knee = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=OVERHEAD_S)
    rng = np.random.default_rng(int(relative * 1000))
    with _verdict(verdict):
        slo = Slo(p95_ms=slo_ms)
        bisecting = (2 * params.step_seconds, params.max_step_seconds)  # a bisection step's windows
        found = [step(knee * relative, slots, service_ms / 1000, slo, *bisecting, rng)[0] for _ in range(reps)]
    return {"relative_rate": relative, **{d: found.count(d) / reps for d in ("pass", "fail", "marginal")}}


def search(args) -> dict:
    config, verdict, seed, windows = args
    slots, service_ms, slo_ms, start_rps = CONFIGS[config]
    knee = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=OVERHEAD_S)
    params, slo = SearchParams(start_rps=start_rps, **windows), Slo(p95_ms=slo_ms)
    rng = np.random.default_rng(seed)
    rs, seconds, counts, decisions = RateSearch(params), 0.0, [], []
    with _verdict(verdict):
        while (nxt := rs.next_step()) is not None:
            rate, phase = nxt
            min_s, max_s = window_seconds(params, slo, rate, phase)
            decision, took_s, (over, n, effective_n) = step(
                rate, slots, service_ms / 1000, slo, min_s, max_s, rng, params.warmup_seconds
            )
            seconds += took_s + 1.0  # + the drain
            counts.append((rate, over, n, effective_n))
            decisions.append(decision)
            rs.record(rate, phase, decision == "pass")
    best = rs.best_rps if rs.confirmed else None
    failed = (r for (r, *_), d in zip(counts, decisions, strict=True) if d == "fail")
    high = min((r for r in failed if best is None or r > best), default=None)
    as_run = [
        {
            "offered_rps": r,
            "decision": d,
            # weighed by all its requests (the method before): as if every one were independent
            "exceedance": [
                {"name": "p95", "allowed_fraction": 0.05, "over": o, "n": n, "effective_n": e if FIT_EFFECTIVE else n}
            ],
        }
        for (r, o, n, e), d in zip(counts, decisions, strict=True)
    ]
    answer = knee_estimate(as_run, best, high).rps if best else None
    return {
        "seed": seed,
        "max_sustained_rps": answer,
        "interval_low_rps": best,
        "interval_high_rps": high,
        "error": (answer or 0.0) / knee - 1,
        "low_error": (best or 0.0) / knee - 1,
        "step_counts": counts,  # (rate, over, n, effective n) of each step, in the order run
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
    knee = rate_at_slo(slo_ms, slots, service_ms / 1000, overhead_s=OVERHEAD_S)
    print(f"{args.config}: C={slots} S={service_ms:g} ms p95 <= {slo_ms:g} ms, knee {knee:.2f} req/s, {args.verdict}")
    with ProcessPoolExecutor(
        args.parallel, initializer=_configure_worker, initargs=(args.extra_doublings, not args.fit_all_requests)
    ) as pool:
        todo = [] if args.no_steps else RATES
        steps = list(pool.map(steps_at, [(args.config, args.verdict, r, args.steps, windows) for r in todo]))
        for s in steps:
            shares = f"pass {s['pass']:.0%} fail {s['fail']:.0%} marginal {s['marginal']:.0%}"
            print(f"  step at {s['relative_rate']:.2f} x knee: {shares}")
        searches = list(
            pool.map(search, [(args.config, args.verdict, 1000 + i, windows) for i in range(args.searches)])
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
