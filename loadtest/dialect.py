"""What the client must know of each engine's OpenAI-compatible API (serving.engine, --engine).

vLLM (and an external server, taken to speak vLLM's dialect) accepts its sampling extensions
(`ignore_eos`, `min_tokens`), lists the served model in /v1/models and exports Prometheus
metrics at /metrics. `transformers serve` rejects any field it does not use (`stream_options`,
`tool_choice`, `ignore_eos`...), sends usage with its last chunk unasked, takes generation
settings as a `generation_config` JSON string, lists the local hub cache rather than its pinned
model, and has no /metrics.
"""

from __future__ import annotations

import json

from llmcap.profile import RequestSettings


def request_fields(engine: str, request: RequestSettings) -> dict:
    """The fields every request body carries besides the model and the prompt."""
    fields: dict = {"stream": True, "max_tokens": request.max_tokens, "temperature": request.temperature}
    if engine == "transformers":
        # a fixed output length is a floor on new tokens, which also keeps the end-of-sequence token out
        floor = request.max_tokens if request.ignore_eos else request.min_tokens
        if floor is not None:
            fields["generation_config"] = json.dumps({"min_new_tokens": floor, "max_new_tokens": request.max_tokens})
        return fields
    fields["stream_options"] = {"include_usage": True}
    if request.ignore_eos:
        fields["ignore_eos"] = True
    if request.min_tokens is not None:
        fields["min_tokens"] = request.min_tokens
    return fields | template_fields(engine, request.chat_template_kwargs)


def template_fields(engine: str, chat_template_kwargs: dict | None) -> dict:
    """vLLM's switch for the chat template (thinking off, say): part of the prompt, so every request
    of the load test and of the quality pass carries it; `transformers serve` refuses the field."""
    if engine == "transformers" or not chat_template_kwargs:
        return {}
    return {"chat_template_kwargs": dict(chat_template_kwargs)}


def takes_tool_choice(engine: str) -> bool:
    return engine != "transformers"


def lists_served_model(engine: str) -> bool:
    """Whether /v1/models names the model the server answers to."""
    return engine != "transformers"


def exports_metrics(engine: str) -> bool:
    """Whether the server has vLLM's Prometheus metrics at /metrics."""
    return engine != "transformers"
