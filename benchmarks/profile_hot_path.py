"""Profile the load generator at a steady rate with py-spy and print where its time goes.

    .venv/bin/pip install py-spy && .venv/bin/python benchmarks/profile_hot_path.py [--rps 1600]

Zero-work server on core 0, llmcap's locustfile on core 1 for 30 s; py-spy samples the load
generator for 15 s of steady state (idle frames excluded) and the script prints the functions
with the most samples, by own time and by inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loadgen_cost import fixed_rate_command, free_port, pinned  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=1600)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(pinned([sys.executable, str(HERE / "zero_server.py"), "--port", str(port)], "0"))
    run_dir = Path(tempfile.mkdtemp(prefix="llmcap-profile-"))
    out = run_dir / "stacks.txt"
    try:
        time.sleep(1)
        cmd = fixed_rate_command(url, args.rps, 30, run_dir / "run", 256)
        proc = subprocess.Popen(pinned(cmd, "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(8)
        subprocess.run(
            [
                pyspy,
                "record",
                "--pid",
                str(proc.pid),
                "--duration",
                "15",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        proc.wait(timeout=120)
    finally:
        server.terminate()
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"{total} samples of the load generator at {args.rps:g} req/s (busy time only)")
    print("\nby own time:")
    for f, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {f}")
    print("\nby inclusive time (llmcap's functions):")
    for f, n in [(f, n) for f, n in inclusive.most_common() if "llmcap" in f or "loadtest" in f][: args.top]:
        print(f"  {100 * n / total:5.1f} %  {f}")


if __name__ == "__main__":
    main()
