"""One clock for every timestamp llmcap writes.

Wall-clock seconds (so request samples line up with Prometheus scrapes and logs)
that never step backwards (so durations are exact): the wall time at import plus
the monotonic time elapsed since.
"""

import time

_WALL0 = time.time()
_PERF0 = time.perf_counter()
_perf = time.perf_counter


def now() -> float:
    return _WALL0 + (_perf() - _PERF0)
