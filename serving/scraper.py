"""Scrape Prometheus endpoints into the run directory, once a second, in a process of its own.

    python -m serving.scraper --out RUN_DIR/telemetry --target vllm=http://127.0.0.1:8000/metrics \
        --target gpu=http://127.0.0.1:9400/metrics

Each target gets `<name>.jsonl`: one line per scrape, {"t": unix seconds, "m": [[name,
{labels}, value], ...]}, on the same wall clock as the request samples. Only the
families a capacity report reads are kept (vLLM's, GPU exporters'), not Python's
process metrics. A target that is down is reported once, retried every interval,
and never stops anything. Its own process keeps the scrape off Locust's gevent
loop (and that loop's timing off the scrape).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llmcap.log import get_logger
from llmcap.rundir import scrape_line

log = get_logger("llmcap.scraper")

KEEP_PREFIXES = ("vllm:", "llmcap_gpu_", "DCGM_FI_")


def parse(text: str) -> list:
    rows = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(KEEP_PREFIXES):
            continue
        for s in family.samples:
            rows.append([s.name, s.labels, s.value])
    return rows


async def scrape_forever(targets: dict[str, str], out: Path, interval_s: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = {name: open(out / f"{name}.jsonl", "a") for name in targets}
    down: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=max(interval_s * 0.9, 0.5))
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(name: str, url: str) -> None:
            t = time.time()
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        raise aiohttp.ClientError(f"HTTP {response.status}")
                    text = await response.text()
                rows = parse(text)
            except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
                if name not in down:
                    log.warning(f"{name} ({url}) unreachable: {type(e).__name__} {e}; retrying")
                    down.add(name)
                return
            if name in down:
                log.info(f"{name} is back")
                down.discard(name)
            files[name].write(scrape_line(t, rows))
            files[name].flush()

        parent = os.getppid()
        next_t = time.time()
        while os.getppid() == parent:  # never outlive the load test that started it
            await asyncio.gather(*(one(n, u) for n, u in targets.items()))
            next_t += interval_s
            await asyncio.sleep(max(0.0, next_t - time.time()))


def start(out: Path, targets: dict[str, str], interval_s: float = 1.0) -> subprocess.Popen:
    """Start the scraper as a child process (stopped with .terminate())."""
    cmd = [sys.executable, "-m", "serving.scraper", "--out", str(out), "--interval", str(interval_s)]
    for name, url in targets.items():
        cmd += ["--target", f"{name}={url}"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--target", action="append", default=[], help="NAME=URL of a /metrics endpoint")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    targets = dict(t.split("=", 1) for t in args.target)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        asyncio.run(scrape_forever(targets, args.out, args.interval))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
