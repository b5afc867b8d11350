"""Writes day-per-minute.csv: a made-up day of requests per minute for the fleet-sizing examples.

A quiet night at 10 req/s, a working-day hump peaking near 50 req/s at 14:00 (a Gaussian of 4 h),
and Poisson noise on each minute's count (seed 0). Written for llmcap; no one's real traffic.
    python examples/traffic/make_day.py
"""

import math
from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
rows = ["minute,requests"]
for minute in range(24 * 60):
    hour = minute / 60
    rps = 10 + 40 * math.exp(-(((hour - 14) / 4) ** 2))
    rows.append(f"{minute},{rng.poisson(rps * 60)}")
Path(__file__).with_name("day-per-minute.csv").write_text("\n".join(rows) + "\n")
