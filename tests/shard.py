"""`--shard K/N`: the Kth of N parts of the tests selected, so that scripts/test.sh can run three parts
of the stub's tests at once (they mostly wait on the stub and on Locust). The parts are balanced by
each test's time in a CI run (tests/durations.json, from pytest's --durations; a test not listed
counts DEFAULT_S): the longest first, each to the part with the least time so far. Every process
computes the same parts from the same collection, so together they are the selection exactly."""

import json
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
DEFAULT_S = 1.0


def assign(seconds: list[float], parts: int) -> list[int]:
    """The part of each test: longest processing time first (Graham), ties in collection order."""
    loads = [0.0] * parts
    part = [0] * len(seconds)
    for i in sorted(range(len(seconds)), key=lambda i: -seconds[i]):
        part[i] = loads.index(min(loads))
        loads[part[i]] += seconds[i]
    return part


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="K/N", help="run the Kth of N parts of the selected tests")


@pytest.hookimpl(trylast=True)  # after -m has selected, and after conftest has marked and ordered
def pytest_collection_modifyitems(config, items):
    shard = config.getoption("--shard")
    if not shard:
        return
    k, n = (int(x) for x in shard.split("/"))
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    parts = assign([known.get(item.nodeid, DEFAULT_S) for item in items], n)
    kept = [item for item, part in zip(items, parts, strict=True) if part == k - 1]
    config.hook.pytest_deselected(items=[item for item, part in zip(items, parts, strict=True) if part != k - 1])
    items[:] = kept
