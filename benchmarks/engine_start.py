"""What does compiling the tiny model cost the CPU engine, and what does it buy?

    .venv/bin/python benchmarks/engine_start.py [--rounds 3] [--concurrency 64]

Starts the demo profile's bf16 variant (`profiles/cpu-tiny.yaml`) `--rounds` times each way, in
alternation: as the profile says (`--enforce-eager`) and with vLLM's default torch.compile. Each
start is timed to ready and warmed (serving/launcher.py, as plan does), then measured saturated for
20 s: `--concurrency` requests kept open (a closed loop), completions per second.
Results go to benchmarks/results/engine-start-<UTC time>.json, recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from benchmarks.engine_drift import CLOSED_S, PROFILE, measure  # noqa: E402
from llmcap.profile import load_profile  # noqa: E402
from llmcap.tiny_model import ensure_tiny_model  # noqa: E402
from serving.cpu_support import cpu_model, instruction_sets  # noqa: E402
from serving.launcher import Server  # noqa: E402
from tests.conftest import free_port  # noqa: E402

EAGER = "--enforce-eager"


def one_start(compiled: bool, concurrency: int, seed: int, work: Path) -> dict:
    profile = load_profile(REPO / PROFILE)
    ensure_tiny_model(profile)
    profile.serving.extra_args = [a for a in profile.serving.extra_args if not (compiled and a == EAGER)]
    with Server(profile, "bf16", work / "server", port=free_port()) as server:
        closed = ["--concurrency", str(concurrency), "--duration", str(CLOSED_S)]
        step = measure(server.url, server.model_name, closed, seed, work / "run")
    return {"compiled": compiled, "ready_s": round(server.ready_s, 1), "saturated_rps": step["achieved_rps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    starts = []
    for i in range(args.rounds):
        for compiled in (False, True):
            with tempfile.TemporaryDirectory() as work:
                starts.append(one_start(compiled, args.concurrency, seed=i, work=Path(work)))
            print(json.dumps(starts[-1]), flush=True)
    summary = {
        way: {
            key: statistics.median(s[key] for s in starts if s["compiled"] == (way == "compiled"))
            for key in ("ready_s", "saturated_rps")
        }
        for way in ("eager", "compiled")
    }
    machine = {"cpu_model": cpu_model(), "instruction_sets": instruction_sets(), "arch": platform.machine()}
    out = {"machine": machine, "starts": starts, "median": summary}
    path = HERE / "results" / f"engine-start-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary), "->", path)


if __name__ == "__main__":
    main()
