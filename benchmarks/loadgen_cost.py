"""What llmcap's load generator costs per request, and how exactly it keeps its schedule.

    python benchmarks/loadgen_cost.py [--rates 200 400 800 1600 3200] [--processes 1] [--seconds 20]

Starts the zero-work server (benchmarks/zero_server.py) pinned to one core and llmcap's
locustfile in fixed-rate mode pinned to the other(s) (where `taskset` exists), 30-chunk
streamed responses, and records for each rate: the rate the server counted, the CPU-ms per
request of all load-generating processes (from /proc, steady state only: from 3 s into
the run to 1 s before its end), lateness p50/p99, client-measured TTFT and end-to-end
p50/p99 (the truth is ~0: this is the client's own overhead) and whether the load
generator's self-check flagged itself. At each rate it also runs a bare Locust locustfile
(benchmarks/bare_locust.py) on the same core and records llmcap's CPU per request as a
ratio to it: CPUs differ several-fold, the ratio is what compares across machines. The
CPU model and its instruction sets go with every result. Results go to
benchmarks/results/<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from serving.cpu_support import cpu_model, instruction_sets  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and all its descendants now."""
    total, todo, seen = 0.0, [root_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (OSError, IndexError):
            continue
        todo.extend(int(k) for k in kids)
    return total


def server_count(url: str) -> int:
    return json.loads(urllib.request.urlopen(url + "/stats", timeout=5).read())["requests"]


def pinned(cmd: list[str], cores: str) -> list[str]:
    return ["taskset", "-c", cores, *cmd] if shutil.which("taskset") and os.cpu_count() > 1 else cmd


def fixed_rate_command(url: str, rate: float, seconds: float, run_dir: Path, max_concurrency: int) -> list[str]:
    """llmcap's text2sql locustfile at a fixed rate against the zero server, no report, no vLLM metrics."""
    return [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(REPO / "loadtest" / "text2sql.py"),
        "--headless",
        "--only-summary",
        "-H",
        url,
        "--model",
        "zero",
        "--rps",
        str(rate),
        "--duration",
        str(seconds),
        "--run-dir",
        str(run_dir),
        "--max-concurrency",
        str(max_concurrency),
        "--no-report",
        "--max-tokens",
        "30",
        "--metrics-url",
        url + "/no-metrics",
    ]


def run_rate(url: str, rate: float, seconds: float, processes: int, cores: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="llmcap-bench-"))
    cmd = fixed_rate_command(url, rate, seconds, run_dir, max(64, int(rate // 10)))
    if processes > 1:
        cmd += ["--processes", str(processes)]
    proc = subprocess.Popen(pinned(cmd, cores), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # steady state: the load starts once users are spawned (~1-2 s after launch)
    progress = run_dir / "samples.bin"
    deadline = time.time() + 60
    while time.time() < deadline and not (progress.exists() and progress.stat().st_size > 0):
        time.sleep(0.1)
    time.sleep(3)
    c0, n0, t0 = cpu_seconds(proc.pid), server_count(url), time.time()
    time.sleep(max(1.0, seconds - 5))
    c1, n1, t1 = cpu_seconds(proc.pid), server_count(url), time.time()
    _, err = proc.communicate(timeout=seconds + 120)
    result = json.loads((run_dir / "result.json").read_text())
    step = result["steps"][0]
    shutil.rmtree(run_dir, ignore_errors=True)
    requests = n1 - n0
    return {
        "offered_rps": rate,
        "achieved_rps_server": requests / (t1 - t0),
        "achieved_ratio": requests / (t1 - t0) / rate,
        "cpu_ms_per_request": (c1 - c0) * 1000 / requests if requests else None,
        "lateness_p50_ms": step["lateness_p50_ms"],
        "lateness_p99_ms": step["lateness_p99_ms"],
        "ttft_p50_ms": step["ttft_p50_ms"],
        "ttft_p99_ms": step["ttft_p99_ms"],
        "e2e_p50_ms": step["p50_ms"],
        "e2e_p99_ms": step["p99_ms"],
        "self_check_flagged": bool(step.get("generator_bottleneck")),
        "self_check_warning": step.get("warning"),
        "generator_cpu_percent": step.get("generator_cpu_percent"),
        "errors": step["failed"],
        "exit_code": proc.returncode,
    }


def run_bare(url: str, rate: float, seconds: float, cores: str) -> dict:
    """The same rate from a bare Locust FastHttpUser (closed loop, constant_throughput pacing)."""
    users = max(20, int(rate // 10))
    cmd = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(HERE / "bare_locust.py"),
        "--headless",
        "--only-summary",
        "-H",
        url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds:g}s",
    ]
    env = {**os.environ, "BARE_RPS_PER_USER": str(rate / users)}
    proc = subprocess.Popen(pinned(cmd, cores), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(4)  # spawned and paced
    c0, n0, t0 = cpu_seconds(proc.pid), server_count(url), time.time()
    time.sleep(max(1.0, seconds - 6))
    c1, n1, t1 = cpu_seconds(proc.pid), server_count(url), time.time()
    proc.wait(timeout=seconds + 60)
    requests = n1 - n0
    return {
        "achieved_rps_server": requests / (t1 - t0),
        "cpu_ms_per_request": (c1 - c0) * 1000 / requests if requests else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 400, 800, 1600, 3200])
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-Locust yardstick")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(pinned([sys.executable, str(HERE / "zero_server.py"), "--port", str(port)], "0"))
    client_cores = "1" if args.processes == 1 else f"1-{os.cpu_count() - 1}"
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                server_count(url)
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        for rate in args.rates:
            row = run_rate(url, rate, args.seconds, args.processes, client_cores)
            if not args.no_bare:
                bare = run_bare(url, rate, args.seconds, client_cores)
                row["bare_locust"] = bare
                if bare["cpu_ms_per_request"] and row["cpu_ms_per_request"]:
                    row["cpu_ratio_to_bare_locust"] = row["cpu_ms_per_request"] / bare["cpu_ms_per_request"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "instruction_sets": instruction_sets(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "taskset": bool(shutil.which("taskset")),
        },
        "processes": args.processes,
        "seconds": args.seconds,
        "chunks": 30,
        "rows": rows,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-p{args.processes}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
