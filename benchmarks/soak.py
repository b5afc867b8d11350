"""A long steady run against the zero-work server: the load generator's memory must stay flat.

    python benchmarks/soak.py [--rps 200] [--seconds 600]

Samples the locust process's resident memory (RSS) every 10 s and writes the series, with
the start and end values, to benchmarks/results/soak-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loadgen_cost import fixed_rate_command, free_port, pinned, server_count  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(pinned([sys.executable, str(HERE / "zero_server.py"), "--port", str(port)], "0"))
    run_dir = Path(tempfile.mkdtemp(prefix="llmcap-soak-"))
    try:
        time.sleep(1)
        cmd = fixed_rate_command(url, args.rps, args.seconds, run_dir, 1024)
        proc = subprocess.Popen(pinned(cmd, "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        series = []
        t0 = time.time()
        time.sleep(10)
        while proc.poll() is None and time.time() - t0 < args.seconds:
            series.append([round(time.time() - t0), round(rss_mib(proc.pid), 1)])
            print(series[-1], flush=True)
            time.sleep(10)
        proc.wait(timeout=120)
        sent = server_count(url)
    finally:
        server.terminate()
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rps": args.rps,
        "seconds": args.seconds,
        "requests": sent,
        "rss_mib_start": series[0][1],
        "rss_mib_end": series[-1][1],
        "rss_mib_max": max(v for _, v in series),
        "series": series,
        "exit_code": proc.returncode,
        "samples_bytes": (run_dir / "samples.bin").stat().st_size,
    }
    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"RSS {out['rss_mib_start']} MiB at 10 s, {out['rss_mib_end']} MiB at the end; {sent} requests; {path}")


if __name__ == "__main__":
    main()
