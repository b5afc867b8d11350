"""scripts/test.sh's halves (tests/shard.py): together exactly the selection, no test in both, and
balanced by time."""

import random
import subprocess
import sys

from tests.conftest import REPO
from tests.shard import assign

FILES = ["tests/test_intervals.py", "tests/test_search_sim.py"]  # quick to collect


def collected(*args: str) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *FILES, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_two_halves_make_the_selection():
    everything, first, second = collected(), collected("--shard", "1/2"), collected("--shard", "2/2")
    assert len(everything) > 10 and first and second
    assert not set(first) & set(second) and sorted(first + second) == sorted(everything)
    assert abs(len(first) - len(second)) <= 1  # none of these is timed: equal weights, equal counts


def test_the_parts_are_balanced_by_time():
    rng = random.Random(1)
    for _ in range(200):
        seconds = [rng.choice([0.5, 1.0, 8.0, 20.0, 60.0]) for _ in range(rng.randint(2, 40))]
        parts = assign(seconds, 2)
        loads = [sum(s for s, p in zip(seconds, parts, strict=True) if p == j) for j in (0, 1)]
        # Graham's bound for longest-first: the parts differ by at most the longest test
        assert abs(loads[0] - loads[1]) <= max(seconds)
    assert assign([60, 50, 10, 1], 2) == [0, 1, 1, 0]
