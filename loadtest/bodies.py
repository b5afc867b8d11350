"""Request bodies, encoded once at start: the hot path only sends bytes."""

from __future__ import annotations

import json

from llmcap.profile import RequestSettings
from loadtest.dialect import request_fields, takes_tool_choice


def build_bodies(prompts, model: str, request: RequestSettings, engine: str = "vllm") -> list[bytes]:
    fields = {"model": model, **request_fields(engine, request)}
    bodies = []
    for p in prompts.requests:
        body = {**fields, **p}
        if not takes_tool_choice(engine):
            body.pop("tool_choice", None)
        elif request.tool_choice and "tools" in body:
            body["tool_choice"] = request.tool_choice
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies
