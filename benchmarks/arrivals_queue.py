"""What smoothing the arrivals does to a queue: llmcap's own arrival generators feeding a simulated
M/D/C queue (C slots, fixed service time), window by window, as a search step sees it.

    .venv/bin/python benchmarks/arrivals_queue.py                 # C=4, S=200 ms, p95 <= 600 ms
    .venv/bin/python benchmarks/arrivals_queue.py --slots 16 --service-ms 100 --slo-ms 300

For each arrival kind and each rate (as a fraction of the steady-state knee under Poisson
arrivals), `--windows` windows of `--window-s` seconds, each after `--warmup-s` from an empty
queue: the median p95 of the windows, and the share of windows whose p95 is within the SLO
(what a step judged on its sample p95 would pass). Pure simulation: no server, seconds to run.
Writes results/arrivals-queue-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.arrivals import interarrival_gaps  # noqa: E402
from tests.queueing import rate_at_slo  # noqa: E402


def window_p95_ms(rate: float, kind: str, slots: int, service_s: float, warmup_s: float, window_s: float, seed: int):
    gaps = interarrival_gaps(rate, kind, random.Random(seed))
    free = [0.0] * slots
    t, sojourn = 0.0, []
    while t < warmup_s + window_s:
        t += next(gaps)
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service_s)
        if t >= warmup_s:
            sojourn.append(start + service_s - t)
    return float(np.percentile(sojourn, 95) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--service-ms", type=float, default=200.0)
    ap.add_argument("--slo-ms", type=float, default=600.0)
    ap.add_argument("--window-s", type=float, default=40.0)
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.9, 1.0, 1.1, 1.15])
    args = ap.parse_args()
    service_s = args.service_ms / 1000
    knee = rate_at_slo(args.slo_ms, args.slots, service_s)
    print(f"C={args.slots} S={args.service_ms:g} ms, p95 <= {args.slo_ms:g} ms: steady-state knee {knee:.2f} req/s")
    rows = []
    for fraction in args.fractions:
        rate = knee * fraction
        for kind in ("poisson", "poisson-blocked"):
            p95s = np.array(
                [
                    window_p95_ms(rate, kind, args.slots, service_s, args.warmup_s, args.window_s, seed)
                    for seed in range(args.windows)
                ]
            )
            row = {
                "fraction_of_knee": fraction,
                "rate_rps": rate,
                "arrival": kind,
                "median_p95_ms": float(np.median(p95s)),
                "windows_within_slo": float((p95s <= args.slo_ms).mean()),
            }
            rows.append(row)
            print(
                f"  {fraction:4.2f} x knee ({rate:6.2f} req/s) {kind:<16} median window p95 "
                f"{row['median_p95_ms']:6.0f} ms, windows within the SLO {row['windows_within_slo']:5.0%}"
            )
    out = Path(__file__).parent / "results" / f"arrivals-queue-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "knee_rps": knee, "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
