"""A zero-work OpenAI-compatible streaming server, for measuring the load generator itself.

    python benchmarks/zero_server.py --port 8900 --chunks 30

Every chat completion gets the same pre-built SSE response (a role chunk, `chunks` content
chunks, a usage chunk, [DONE]) at once, chunked HTTP/1.1 with keep-alive. A raw asyncio
protocol, not a web framework: it must not be the limit (see benchmarks/README.md for its
measured ceiling). GET /stats returns the number of chat completions answered so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json


def build_response(chunks: int, model: str) -> bytes:
    def event(obj) -> bytes:
        data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    base = {"id": "chatcmpl-zero", "object": "chat.completion.chunk", "created": 0, "model": model}
    body = event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for i in range(chunks):
        body += event({**base, "choices": [{"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}]})
    body += event(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": 100 + chunks},
        }
    )
    done = b"data: [DONE]\n\n"
    body += f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )
    return head + body


class Zero(asyncio.Protocol):
    response = b""
    models = b""
    count = 0

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"POST"):
                Zero.count += 1
                self.transport.write(Zero.response)
            elif head.startswith(b"GET /stats"):
                self._json({"requests": Zero.count})
            elif head.startswith(b"GET /v1/models"):
                self._json({"object": "list", "data": [{"id": "zero", "object": "model"}]})
            else:
                self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Zero, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--chunks", type=int, default=30)
    args = parser.parse_args()
    Zero.response = build_response(args.chunks, "zero")
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
