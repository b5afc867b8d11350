"""Request bodies, encoded once at start: the hot path only joins bytes and sends them.

A replayed dataset repeats its prompts, and vLLM's prefix cache would serve a repeat whole, which
production traffic never sees. So each body is split where a per-request marker goes: at the start
of the first message that not every prompt shares. The part all requests share (system prompt,
tools, the chat template's header) is cached as in production; the rest is computed every time.
"""

from __future__ import annotations

import json

from llmcap.profile import RequestSettings
from loadtest.dialect import request_fields, takes_tool_choice

_PLACEHOLDER = "@@llmcap-marker@@"


def shared_messages(requests: list[dict]) -> int:
    """How many leading messages every request has in common; the marker goes in the next (in the
    last one when the requests are all alike)."""
    lists = [r.get("messages") or [] for r in requests]
    shortest = min((len(m) for m in lists), default=0)
    common = 0
    while common < shortest and all(m[common] == lists[0][common] for m in lists):
        common += 1
    return min(common, max(shortest - 1, 0))


def build_bodies(prompts, model: str, request: RequestSettings, engine: str = "vllm") -> list[tuple[bytes, bytes]]:
    """(head, tail) per prompt: a request sends head + marker + tail, or head alone where tail is
    empty (no marker: `request.unique_marker` off, or a message whose content is not text)."""
    fields = {"model": model, **request_fields(engine, request)}
    at = shared_messages(prompts.requests)
    bodies = []
    for p in prompts.requests:
        body = {**fields, **p}
        if not takes_tool_choice(engine):
            body.pop("tool_choice", None)
        elif request.tool_choice and "tools" in body:
            body["tool_choice"] = request.tool_choice
        messages = body.get("messages") or []
        if request.unique_marker and at < len(messages) and isinstance(messages[at].get("content"), str):
            messages = [dict(m) for m in messages]
            messages[at]["content"] = _PLACEHOLDER + messages[at]["content"]
            body["messages"] = messages
            head, _, tail = json.dumps(body, separators=(",", ":")).encode().partition(_PLACEHOLDER.encode())
            bodies.append((head, tail))
        else:
            bodies.append((json.dumps(body, separators=(",", ":")).encode(), b""))
    return bodies


def with_marker(body: tuple[bytes, bytes], source: int, seq: int) -> bytes:
    """The bytes to send: the marker is unique per request across processes (each numbers its own
    requests, and picks prompts in the same order)."""
    head, tail = body
    return head + b"[%x.%x] " % (source, seq) + tail if tail else head
