"""A stub OpenAI-compatible chat-completions server for exact tests of the client.

Everything that shapes a response is in `StubConfig` and can be changed while the
server runs (POST /stub/config), so a test can e.g. raise the latency mid-run.

    python tests/stub_server.py --port 8000 --chunks 30 --first-delay-ms 300

Capacity model (for testing the rate search): with `slots=C` the server serves at
most C requests at once, FIFO, each holding its slot for first_delay + chunks x
chunk_delay. That is an M/D/C queue under Poisson arrivals. With `chunk_delay_per_running_ms`
each chunk also waits that long per other request running, so time per output token grows with load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections import deque

from aiohttp import web

FAULTS = ("none", "status", "stall", "cut", "malformed", "slow_headers", "no_tokens", "error_event")
# what `transformers serve` (5.19 cli/serving/chat_completion.py) answers with HTTP 422
TRANSFORMERS_REJECTS = ("stream_options", "tool_choice", "ignore_eos", "min_tokens", "n", "logprobs")


@dataclasses.dataclass
class StubConfig:
    model: str = "stub-model"
    chunks: int = 30
    first_delay_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    # each chunk waits this much longer per other request running beside it: decode slows as the
    # batch grows, as in vLLM, so a TPOT bound can bind before the end-to-end one
    chunk_delay_per_running_ms: float = 0.0
    slots: int = 0  # 0: unlimited concurrency
    fault: str = "none"
    fault_every: int = 1  # apply the fault to every n-th request (1: all)
    fault_status: int = 500
    slow_headers_ms: float = 2000.0
    cut_after_chunks: int = 3
    api_key: str = ""  # if set, requests need "Authorization: Bearer <api_key>"
    # "transformers": as `transformers serve` 5.x: rejects fields it does not use, takes a
    # generation_config JSON string, sends usage with its last chunk unasked and no [DONE]
    dialect: str = "vllm"
    # non-streamed answers by prompt: a JSON object {text in the last user message: answer}; a
    # request with tools whose answer is a JSON call gets it back as a tool call (as vLLM's parser)
    answers: str = ""
    tokenize: int = 0  # 1: answer POST /tokenize {"prompt"} as vLLM does, one token per 4 characters

    def update(self, changes: dict) -> None:
        for key, value in changes.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key))(value))
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")


class StubState:
    def __init__(self, config: StubConfig):
        self.config = config
        self.arrivals: deque[float] = deque(maxlen=1_000_000)
        self.completed = 0
        self.running = 0
        self.waiting = 0
        self.request_count = 0
        self.slots: asyncio.Semaphore | None = None
        self.slots_size = 0
        self.last_body: dict | None = None
        self.bodies: deque[dict] = deque(maxlen=1000)  # the last requests as received, for tests of what was sent
        # (wall time it ended, ms) of each moment the event loop ran late: the machine or the loop
        # held every request back at once, which a test must tell from the queue it models
        self.stalls: deque[tuple[float, float]] = deque(maxlen=10_000)

    def semaphore(self) -> asyncio.Semaphore | None:
        if self.config.slots <= 0:
            return None
        if self.slots is None or self.slots_size != self.config.slots:
            self.slots = asyncio.Semaphore(self.config.slots)
            self.slots_size = self.config.slots
        return self.slots


def _chunk(model: str, delta: dict, created: int) -> bytes:
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _usage_chunk(model: str, prompt_tokens: int, completion_tokens: int, created: int) -> bytes:
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def prompt_tokens_of(body: dict) -> int:
    """The stub's 'tokenizer': one token per 4 characters of message content."""
    chars = 0
    for message in body.get("messages", []):
        content = message.get("content") or ""
        chars += len(content) if isinstance(content, str) else len(json.dumps(content))
    return chars // 4 + 1


def text_tokens_of(text: str) -> int:
    return len(text) // 4 + 1


async def tokenize(request: web.Request) -> web.Response:
    if not request.app["state"].config.tokenize:
        raise web.HTTPNotFound()
    count = text_tokens_of((await request.json()).get("prompt", ""))
    return web.json_response({"count": count, "max_model_len": 4096, "tokens": list(range(count))})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state: StubState = request.app["state"]
    cfg = state.config
    state.arrivals.append(time.time())
    state.request_count += 1
    if cfg.api_key and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
        return web.json_response({"error": {"message": "bad API key", "code": 401}}, status=401)
    n = state.request_count
    body = await request.json()
    state.last_body = body
    state.bodies.append(body)
    if cfg.dialect == "transformers":
        unexpected = sorted(set(body) & set(TRANSFORMERS_REJECTS))
        if unexpected:
            return web.json_response({"detail": f"Unexpected fields in the request: {unexpected}"}, status=422)
    faulty = cfg.fault != "none" and n % max(cfg.fault_every, 1) == 0
    fault = cfg.fault if faulty else "none"

    if fault == "status":
        return web.json_response({"error": {"message": "injected", "code": cfg.fault_status}}, status=cfg.fault_status)
    if fault == "slow_headers":
        await asyncio.sleep(cfg.slow_headers_ms / 1000)

    sem = state.semaphore()
    state.waiting += 1
    if sem is not None:
        await sem.acquire()
    state.waiting -= 1
    state.running += 1
    try:
        return await _stream(request, state, body, fault)
    finally:
        state.running -= 1
        if sem is not None:
            sem.release()


def _answer(cfg: StubConfig, body: dict) -> dict | None:
    """The configured answer to this prompt, as an assistant message, or None."""
    if not cfg.answers:
        return None
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = str(users[-1].get("content", "")) if users else ""
    for key, answer in json.loads(cfg.answers).items():
        if key in last:
            if body.get("tools"):
                try:
                    call = json.loads(answer)
                    function = {"name": call["name"], "arguments": json.dumps(call["parameters"])}
                    return {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
                    }
                except (ValueError, KeyError, TypeError):
                    pass
            return {"role": "assistant", "content": answer}
    return None


async def _stream(request: web.Request, state: StubState, body: dict, fault: str) -> web.StreamResponse:
    cfg = state.config
    model = body.get("model", cfg.model)
    created = int(time.time())
    max_tokens = int(body.get("max_tokens") or cfg.chunks)
    floor = json.loads(body["generation_config"]).get("min_new_tokens", 0) if body.get("generation_config") else 0
    chunks = min(cfg.chunks, max_tokens) if not body.get("ignore_eos") else max_tokens
    chunks = max(chunks, min(floor, max_tokens))
    if not body.get("stream"):
        await asyncio.sleep((cfg.first_delay_ms + chunks * cfg.chunk_delay_ms) / 1000)
        state.completed += 1
        pt = prompt_tokens_of(body)
        message = _answer(cfg, body) or {"role": "assistant", "content": "tok " * chunks}
        return web.json_response(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "stop" if cfg.answers else "length",
                    }
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": chunks, "total_tokens": pt + chunks},
            }
        )

    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    # Like vLLM: headers and the role chunk go out before the first token exists.
    await resp.write(_chunk(model, {"role": "assistant", "content": ""}, created))
    if fault == "stall":
        # until the client gives up: vLLM aborts a request whose client went away, and one stalled
        # for good would count as running forever, so that every later drain waited out its timeout
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.1)
        return resp
    if cfg.first_delay_ms:
        await asyncio.sleep(cfg.first_delay_ms / 1000)
    if fault == "no_tokens":
        chunks = 0
    for i in range(chunks):
        delay = (cfg.chunk_delay_ms + cfg.chunk_delay_per_running_ms * (state.running - 1)) / 1000
        if i and delay > 0:
            await asyncio.sleep(delay)
        if fault == "cut" and i == cfg.cut_after_chunks:
            request.transport.close()
            return resp
        if fault == "malformed" and i == 1:
            await resp.write(b'data: {"choices": [{"delta": {"content": "unterminated\n\n')
            continue
        if fault == "error_event" and i == 2:
            await resp.write(b'data: {"error":{"message":"injected engine error","code":500}}\n\n')
            break
        await resp.write(_chunk(model, {"content": f"t{i} "}, created))
    opts = body.get("stream_options") or {}
    if cfg.dialect == "transformers":
        await resp.write(_usage_chunk(model, prompt_tokens_of(body), chunks, created))  # and no [DONE]
    elif opts.get("include_usage"):
        await resp.write(_usage_chunk(model, prompt_tokens_of(body), chunks, created))
    if cfg.dialect != "transformers":
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    state.completed += 1
    return resp


async def models(request: web.Request) -> web.Response:
    cfg = request.app["state"].config
    return web.json_response({"object": "list", "data": [{"id": cfg.model, "object": "model", "owned_by": "stub"}]})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def metrics(request: web.Request) -> web.Response:
    """The few vLLM v1 gauges the drain check and the scraper read."""
    state: StubState = request.app["state"]
    name = state.config.model
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="{name}"}} {state.running}\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{engine="0",model_name="{name}"}} {state.waiting}\n'
        "# TYPE vllm:request_success counter\n"
        f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{name}"}} {state.completed}\n'
    )
    return web.Response(text=text, content_type="text/plain")


STALL_MS = 50.0  # an event loop this late is a stall, not scheduling noise
WATCH_S = 0.01


async def watch_loop(app: web.Application):
    """Record every stall of the event loop (a tick WATCH_S long that took STALL_MS more)."""
    state: StubState = app["state"]

    async def watch() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(WATCH_S)
            late_ms = (time.perf_counter() - t - WATCH_S) * 1000
            if late_ms >= STALL_MS:
                state.stalls.append((time.time(), late_ms))

    task = asyncio.create_task(watch())
    yield
    task.cancel()


async def get_stats(request: web.Request) -> web.Response:
    state: StubState = request.app["state"]
    return web.json_response(
        {
            "requests": state.request_count,
            "completed": state.completed,
            "running": state.running,
            "waiting": state.waiting,
            "arrivals": list(state.arrivals),
            "last_body": state.last_body,
            "bodies": list(state.bodies),
            "stalls": [{"end_s": end_s, "ms": ms} for end_s, ms in state.stalls],
        }
    )


async def post_config(request: web.Request) -> web.Response:
    state: StubState = request.app["state"]
    try:
        state.config.update(await request.json())
    except (KeyError, ValueError) as e:
        return web.json_response({"error": str(e)}, status=400)
    return web.json_response(dataclasses.asdict(state.config))


async def reset(request: web.Request) -> web.Response:
    state: StubState = request.app["state"]
    state.arrivals.clear()
    state.completed = state.request_count = 0
    state.stalls.clear()
    state.bodies.clear()
    return web.json_response({"ok": True})


def make_app(config: StubConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["state"] = StubState(config or StubConfig())
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stub/stats", get_stats)
    app.router.add_post("/stub/config", post_config)
    app.router.add_post("/stub/reset", reset)
    app.cleanup_ctx.append(watch_loop)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    for field in dataclasses.fields(StubConfig):
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    config = StubConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StubConfig)})
    web.run_app(make_app(config), host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()
