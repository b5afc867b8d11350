"""Writes bursts-per-second.csv: two minutes of made-up bursty arrivals, counts per second.

A base of 20 requests a second with three kinds of burst on it: a 10-s surge to 2x, a 3-s spike to
3x, and a slow 30-s swell to 1.5x, plus Poisson noise on each second's count (seed 0). Its mean is
about 25 req/s; `--arrival trace` plays it sped up or slowed down to each step's rate. Written for
llmcap; no one's real traffic.
    python examples/traces/make_bursts.py
"""

import math
from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
rows = ["second,requests"]
for second in range(120):
    rps = 20.0
    if 15 <= second < 25:
        rps *= 2.0  # surge
    if 50 <= second < 53:
        rps *= 3.0  # spike
    rps *= 1 + 0.5 * max(0.0, math.sin(math.pi * (second - 75) / 30)) if 75 <= second < 105 else 1  # swell
    rows.append(f"{second},{rng.poisson(rps)}")
Path(__file__).with_name("bursts-per-second.csv").write_text("\n".join(rows) + "\n")
