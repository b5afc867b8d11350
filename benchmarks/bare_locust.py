"""The yardstick: a bare Locust FastHttpUser locustfile, as a user would write one in five minutes.

    BARE_RPS_PER_USER=10 locust -f benchmarks/bare_locust.py --headless -u 40 -r 40 -t 20s -H URL

Each user posts one streamed chat completion and reads the whole response, paced with
`constant_throughput` (closed loop). `loadgen_cost.py` runs it beside llmcap at the same rates so
the CPU per request of both is measured in the same run on the same machine.
"""

import json
import os

from locust import FastHttpUser, constant_throughput, task

BODY = json.dumps(
    {
        "model": "zero",
        "stream": True,
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "How many singers do we have?"}],
    }
)


class BareChatUser(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("BARE_RPS_PER_USER", "10")))

    @task
    def chat(self):
        self.client.post("/v1/chat/completions", data=BODY, headers={"Content-Type": "application/json"})
