"""scripts/test.sh's halves (tests/shard.py): together exactly the selection, no test in both, the
slow ones shared out evenly."""

import subprocess
import sys

from tests.conftest import REPO

FILES = ["tests/test_intervals.py", "tests/test_search_sim.py"]  # quick to collect; some tests slow


def collected(*args: str) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *FILES, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_two_halves_make_the_selection():
    everything, first, second = collected(), collected("--shard", "1/2"), collected("--shard", "2/2")
    assert len(everything) > 10 and first and second
    assert not set(first) & set(second) and sorted(first + second) == sorted(everything)
    slow = set(collected("-m", "slow"))
    assert len(slow) >= 2 and abs(len(slow & set(first)) - len(slow & set(second))) <= 1
