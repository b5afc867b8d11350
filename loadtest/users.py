"""The pooled user: takes a ticket from its process's dispatcher, sends that request streamed,
records it, takes the next. The pool is fixed; the dispatcher sets the rate, not the users."""

from __future__ import annotations

import random

from locust import User, task

from loadtest.bodies import with_marker
from loadtest.client import ChatClient
from loadtest.datasets import Task
from loadtest.plugin import api_key
from loadtest.run_state import state_of
from loadtest.sessions import run_session


class RequestFailed(Exception):
    """How a failed request shows in Locust's own error table."""


class ChatUser(User):
    abstract = True
    task_spec: Task | None = None
    host = None

    def on_start(self):
        state = state_of(self.environment)
        state.ready.wait()
        settings = state.settings
        self.process = state.process
        self.take = self.process.dispatcher.take
        self.bodies = state.bodies
        self.prompts = state.prompts
        self.turns = settings.profile.sessions.turns
        self.think_seconds = settings.profile.sessions.think_seconds
        self.keep_text = settings.store_text
        self.client = ChatClient(
            self.environment.host or settings.host,
            api_key=api_key(settings),
            timeout_s=settings.request.timeout_s,
            store_text=settings.store_text or self.turns > 1,  # a session sends its answers back
        )
        self.rng = random.Random(id(self))  # think times
        self.fire = self.environment.events.request.fire
        self.wait()  # take the first ticket while WAITING, so a stop kills an idle user at once

    def on_stop(self):
        self.client.close()

    def wait_time(self):
        self.ticket = self.take()
        return 0

    @task
    def send(self):
        ticket = self.ticket
        if self.turns > 1:
            return run_session(self, ticket, self.turns, self.think_seconds, self.rng)
        index = self.prompts.pick(ticket[0])
        r = self.client.stream(with_marker(self.bodies[index], self.process.source, ticket[0]))
        self.process.record(ticket, self.prompts.hashes[index], r)
        self.report(ticket, r)

    def report(self, ticket, r):
        # one Locust event per request, with the end-to-end time (not the header time)
        self.fire(
            request_type="POST",
            name="chat/completions",
            response_time=(r.end_s - ticket[1]) * 1000.0,
            response_length=max(r.completion_tokens, 0),
            exception=RequestFailed(r.message) if r.error else None,
            context=None,
        )
