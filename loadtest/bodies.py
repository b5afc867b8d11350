"""Request bodies, encoded once at start: the hot path only sends bytes."""

from __future__ import annotations

import json

from llmcap.profile import RequestSettings


def build_bodies(prompts, model: str, request: RequestSettings) -> list[bytes]:
    fields = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.ignore_eos:
        fields["ignore_eos"] = True
    if request.min_tokens is not None:
        fields["min_tokens"] = request.min_tokens
    bodies = []
    for p in prompts.requests:
        body = {**fields, **p}
        if request.tool_choice and "tools" in body:
            body["tool_choice"] = request.tool_choice
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies
