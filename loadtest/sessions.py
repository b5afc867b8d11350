"""Multi-turn sessions: a user holds a conversation of `turns` requests. Turn k+1 sends turn k's
messages, its answer, and the next prompt's question, a think time after the answer came; so each
turn's prompt begins with the whole previous one, which vLLM's prefix cache can serve (the chat
workload's capacity depends on it).

The rate stays requests per second: the dispatcher starts sessions at rate / turns. A turn is due when
its think time ends, and its latency counts from then (a late server delays the next turn, as it
would delay a person). A turn that fails ends its session. A change of load (the step ended) ends
every session at its next turn, so no step's conversations spill into the next.
"""

from __future__ import annotations

import json
import random

import gevent

from loadtest.bodies import with_marker
from loadtest.clock import now


def run_session(user, ticket: tuple, turns: int, think_seconds: float, rng: random.Random) -> None:
    """The whole conversation that `ticket` starts, sent by `user` (a ChatUser)."""
    process, prompts = user.process, user.prompts
    dispatcher = process.dispatcher
    epoch = dispatcher.epoch
    index = prompts.pick(ticket[0])
    body = json.loads(with_marker(user.bodies[index], process.source, ticket[0]))
    prompt_hash = prompts.hashes[index]
    answer, last_end = "", 0.0
    for turn in range(turns):
        if turn:
            due = last_end + (rng.expovariate(1.0 / think_seconds) if think_seconds > 0 else 0.0)
            gevent.sleep(max(0.0, due - now()))
            if dispatcher.epoch != epoch:
                return  # the step that started this session is over
            question = prompts.requests[prompts.pick(ticket[0] + turn)]["messages"][-1]
            body["messages"] = [*body["messages"], {"role": "assistant", "content": answer}, dict(question)]
            ticket = dispatcher.follow_up(due)
        r = user.client.stream(json.dumps(body, separators=(",", ":")).encode())
        answer = "".join(r.text or [])
        if not user.keep_text:
            r.text = None  # the run directory keeps completions only with --store-text
        process.record(ticket, prompt_hash, r, turn)
        user.report(ticket, r)
        if r.error:
            return
        last_end = r.end_s
