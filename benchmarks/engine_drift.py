"""How much does the CPU engine's capacity move by itself within the hour a repeatability run takes?

    .venv/bin/python benchmarks/engine_drift.py [--minutes 40] [--rps 72] [--concurrency 64]

Starts the vLLM CPU engine once, as search_repeatability.py does (the demo profile's bf16 variant,
prefix cache off), and then, round after round until `--minutes` have passed, measures it twice
with nothing changed but the clock:

- its saturated throughput: `--concurrency` requests kept open for 20 s (a closed loop); the
  completions per second are the machine's speed at that moment, with little noise of their own;
- one fixed-rate Poisson window of 40 s at `--rps` (near the demo's knee): the fraction of requests
  over the SLO's p95 bound, with its 95 % interval and verdict, as a search step judges it.

No method can repeat its answer more closely than the thing measured holds still: if the saturated
throughput moves by X % within the hour, a search that finds the knee accurately will too.
Results go to benchmarks/results/engine-drift-<UTC time>.json, recorded in benchmarks/README.md
(2026-12-01, AMD EPYC: saturated throughput 96-139 req/s over 40 minutes, 8.8 % standard deviation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from llmcap.profile import load_profile  # noqa: E402
from llmcap.tiny_model import ensure_tiny_model  # noqa: E402
from serving.cpu_support import cpu_model  # noqa: E402
from serving.launcher import Server  # noqa: E402
from tests.conftest import LOCUST, free_port  # noqa: E402

PROFILE = "profiles/cpu-tiny.yaml"
CLOSED_S = 20.0
FIXED_S = 40.0


def measure(url: str, model: str, mode: list[str], seed: int, run_dir: Path) -> dict:
    """One locust run of the demo profile in `mode` (--concurrency N or --rps R, with --duration);
    its single step."""
    cmd = [LOCUST, "-f", str(REPO / "loadtest" / "text2sql.py"), "--headless", "--only-summary", "-H", url]
    cmd += ["--llmcap-profile", str(REPO / PROFILE), "--model", model, "--run-dir", str(run_dir)]
    cmd += ["--no-report", "--seed", str(seed), *mode]
    # the exit status says whether the SLO held, which is data here, not an error
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    if not (run_dir / "result.json").exists():
        raise SystemExit(f"locust wrote no result.json (exit {run.returncode}): {run.stderr.strip()[-500:]}")
    (step,) = json.loads((run_dir / "result.json").read_text())["steps"]
    return step


def round_of(url: str, model: str, args: argparse.Namespace, index: int, tmp: Path, t0: float) -> dict:
    started_s = time.time() - t0
    closed = measure(
        url, model, ["--concurrency", str(args.concurrency), "--duration", str(CLOSED_S)], index, tmp / f"c{index}"
    )
    fixed = measure(url, model, ["--rps", str(args.rps), "--duration", str(FIXED_S)], index, tmp / f"f{index}")
    (bound,) = [e for e in fixed["exceedance"] if e["name"] == "p95"]
    return {
        "round": index,
        "started_s": round(started_s, 1),
        "saturated_rps": closed["achieved_rps"],
        "saturated_p50_ms": closed["p50_ms"],
        "fixed_rps": args.rps,
        "fixed_p50_ms": fixed["p50_ms"],
        "fixed_p95_ms": fixed["p95_ms"],
        "fixed_decision": fixed["decision"],
        "fixed_over": bound["over"],
        "fixed_n": bound["n"],
        "fixed_effective_n": bound["effective_n"],
        "fixed_fraction": bound["fraction"],
        "fixed_fraction_interval": [bound["low"], bound["high"]],
    }


def summary(rounds: list[dict]) -> dict:
    rates = sorted(r["saturated_rps"] for r in rounds)
    fractions = [r["fixed_fraction"] for r in rounds]
    decisions = [r["fixed_decision"] for r in rounds]
    return {
        "rounds": len(rounds),
        "saturated_rps_min": rates[0],
        "saturated_rps_median": rates[len(rates) // 2],
        "saturated_rps_max": rates[-1],
        "saturated_spread": rates[-1] / rates[0] - 1,
        "fixed_fraction_min": min(fractions),
        "fixed_fraction_max": max(fractions),
        "fixed_decisions": {d: decisions.count(d) for d in sorted(set(decisions))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--rps", type=float, default=72.0, help="the fixed-rate windows' offered rate")
    ap.add_argument("--concurrency", type=int, default=64, help="requests kept open to saturate the server")
    args = ap.parse_args()
    # resolved once: a commit made while the benchmark runs must not be recorded as the one it ran
    args.commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    profile = load_profile(REPO / PROFILE)
    profile.serving.enable_prefix_caching = False  # as search_repeatability.py's server
    ensure_tiny_model(profile)
    path = HERE / "results" / f"engine-drift-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(profile, "bf16", Path(tmp) / "server", port=free_port())
        server.start()
        t0 = time.time()
        try:
            while time.time() - t0 < args.minutes * 60:
                r = round_of(server.url, server.model_name, args, len(rounds), Path(tmp), t0)
                rounds.append(r)
                lo, hi = r["fixed_fraction_interval"]
                print(
                    f"{r['started_s']:6.0f} s: saturated {r['saturated_rps']:.1f} req/s; at {args.rps:g} req/s "
                    f"p95 {r['fixed_p95_ms']:.0f} ms, {r['fixed_over']} of {r['fixed_n']} over "
                    f"({r['fixed_fraction']:.1%}, interval {lo:.1%}-{hi:.1%}), {r['fixed_decision']}",
                    flush=True,
                )
                write(path, args, rounds)  # after every round: an interrupted run keeps what it measured
        finally:
            server.stop()
    s = write(path, args, rounds)["summary"]
    print(f"saturated {s['saturated_rps_min']:.1f}-{s['saturated_rps_max']:.1f} req/s ({s['saturated_spread']:.1%})")
    print(f"written {path}")


def write(path: Path, args: argparse.Namespace, rounds: list[dict]) -> dict:
    out = {
        "profile": PROFILE,
        "variant": "bf16",
        "commit": args.commit,
        "settings": {"minutes": args.minutes, "rps": args.rps, "concurrency": args.concurrency},
        "machine": {
            "cpu_model": cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "summary": summary(rounds),
        "rounds": rounds,
    }
    path.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
