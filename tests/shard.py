"""`--shard K/N`: of the tests selected, every Nth from the Kth, so that scripts/test.sh can run two
halves of the stub's tests at once (they mostly wait on the stub and on Locust)."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="K/N", help="run every Nth selected test, from the Kth")


@pytest.hookimpl(trylast=True)  # after -m has selected, and after conftest has marked and ordered
def pytest_collection_modifyitems(config, items):
    shard = config.getoption("--shard")
    if not shard:
        return
    k, n = (int(x) for x in shard.split("/"))
    slow = [item for item in items if item.get_closest_marker("slow")]  # shared out first, evenly
    chosen = set(slow[k - 1 :: n] + [item for item in items if item not in slow][k - 1 :: n])
    kept = [item for item in items if item in chosen]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
