"""The load shape: holds the user pool at its size while the controller runs the search (or the
fixed rate), then ends the run. The rate is the dispatcher's business, never the pool's."""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.run_state import state_of


class RateSearchShape(LoadTestShape):
    def tick(self):
        state = state_of(self.runner.environment)
        if state.done or state.settings is None:
            return None
        pool = state.settings.pool_size
        return pool, pool
