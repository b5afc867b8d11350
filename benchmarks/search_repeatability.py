"""How much does the answer move between repeated searches of one real server, and what does it cost?

    .venv/bin/python benchmarks/search_repeatability.py --repeats 5 [--old-commit 185e549]

Starts the vLLM CPU engine once with the demo profile's bf16 variant (profiles/cpu-tiny.yaml,
the tiny random model, prefix cache off as the old method's server had it) and runs the full
search against it `--repeats` times with each method, interleaved (old, new, old, new, ...) so a
drift of the machine falls on both alike:

- "old": the search as of `--old-commit` (sample-percentile verdicts, smoothed "poisson"
  arrivals, fixed windows), run from a `git archive` of that commit with the same profile;
- "new": the search as of `--new-commit` (default HEAD: confidence verdicts, Poisson arrivals,
  sequential steps), also from a `git archive`, so edits to the working tree during the hour
  it runs do not reach it.

For each method: the rates found, their spread (max/min - 1), the intervals (new), and the wall
time of each search. Results go to benchmarks/results/search-repeatability-<UTC time>.json.
Recorded in benchmarks/README.md (2026-11-29, AMD: old 36 % spread in 175 s per search, new 20 % in 473 s;
2026-11-30, Intel, fitted answer: old 53 % in 112 s, new 19 % in 401 s).
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


def checkout(commit: str, into: Path) -> Path:
    """The repository at `commit`, without history; the engine and model are this checkout's."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / ".engine").symlink_to(REPO / ".engine")
    return into


def search(root: Path, url: str, model: str, seed: int, run_dir: Path) -> dict:
    cmd = [LOCUST, "-f", str(root / "loadtest" / "text2sql.py"), "--headless", "--only-summary", "-H", url]
    cmd += ["--llmcap-profile", str(root / PROFILE), "--model", model, "--run-dir", str(run_dir)]
    cmd += ["--no-report", "--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": str(root)}  # the old checkout's modules before this one's
    t0 = time.time()
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=3600)
    wall_s = time.time() - t0
    result = json.loads((run_dir / "result.json").read_text())
    return {
        "seed": seed,
        "exit_code": run.returncode,
        "max_sustained_rps": result["max_sustained_rps"],
        "interval": result.get("max_sustained_rps_interval"),
        "steps": [
            # the reason says why a step ended as it did: its fraction over, the interval, the bursts;
            # the exceedance counts (new method) let a change to the fitted answer be replayed on them
            (
                round(s["offered_rps"], 2),
                s["phase"],
                s.get("decision") or ("pass" if s["passed"] else "fail"),
                round(s.get("measured_s", 0.0), 1),
                s.get("reason"),
                s.get("exceedance"),
            )
            for s in result["steps"]
        ],
        "wall_s": wall_s,
    }


def summary(runs: list[dict]) -> dict:
    found = [r["max_sustained_rps"] for r in runs if r["max_sustained_rps"]]
    walls = sorted(r["wall_s"] for r in runs)
    return {
        "found": found,
        "spread": max(found) / min(found) - 1 if found else None,
        "wall_s": walls,
        "wall_s_median": walls[len(walls) // 2],
        "wall_s_total": sum(walls),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old-commit", default="185e549")
    ap.add_argument("--new-commit", default="HEAD")
    args = ap.parse_args()
    # resolved once: a commit made while the benchmark runs must not be recorded as the one it ran
    args.new_commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.new_commit], capture_output=True, text=True, check=True
    ).stdout.strip()
    profile = load_profile(REPO / PROFILE)
    # the server as the old method knew it: without the prefix cache, which the old method's
    # unmarked replay would have hit whole (both methods meet the same server)
    profile.serving.enable_prefix_caching = False
    ensure_tiny_model(profile)
    path = HERE / "results" / f"search-repeatability-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    with tempfile.TemporaryDirectory() as tmp:
        old_root = checkout(args.old_commit, Path(tmp) / "old")
        new_root = checkout(args.new_commit, Path(tmp) / "new")
        server = Server(profile, "bf16", Path(tmp) / "server", port=free_port())
        server.start()
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        try:
            for seed in range(args.repeats):
                for method, root in (("old", old_root), ("new", new_root)):
                    r = search(root, server.url, server.model_name, seed, Path(tmp) / f"{method}-{seed}")
                    runs[method].append(r)
                    print(
                        f"{method} #{seed}: {r['max_sustained_rps']} req/s, interval {r['interval']}, "
                        f"{len(r['steps'])} steps, {r['wall_s']:.0f} s",
                        flush=True,
                    )
                    write(path, args, runs)  # after every search: an interrupted benchmark keeps what it measured
        finally:
            server.stop()
    for method, s in write(path, args, runs)["summary"].items():
        print(f"{method}: found {s['found']}, spread {s['spread']:.1%}, median wall {s['wall_s_median']:.0f} s")
    print(f"written {path}")


def write(path: Path, args: argparse.Namespace, runs: dict[str, list[dict]]) -> dict:
    out = {
        "profile": PROFILE,
        "variant": "bf16",
        "old_commit": args.old_commit,
        "new_commit": args.new_commit,
        "machine": {
            "cpu_model": cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "summary": {method: summary(r) for method, r in runs.items() if r},
        "runs": runs,
    }
    path.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
