"""A streaming OpenAI chat-completions client that times every token.

This is the hot path of the load generator: one call per request, no JSON
parsing per chunk (only the final usage chunk is parsed), no per-request logging.
It reads the SSE stream line by line as bytes arrive, through geventhttpclient's
`readline(b"\\n")`, which returns as soon as a line is buffered (Locust's
`iter_lines` waits for 1 KiB and makes the first token look late).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import gevent
from geventhttpclient import HTTPClient

from llmcap.rundir import ERROR_CODE
from loadtest.clock import now

CONNECT = ERROR_CODE["connect"]
TIMEOUT = ERROR_CODE["timeout"]
HTTP_STATUS = ERROR_CODE["http_status"]
BAD_STREAM = ERROR_CODE["bad_stream"]
NO_TOKENS = ERROR_CODE["no_tokens"]

_CONTENT = b'"content":'
_TOOL_CALLS = b'"tool_calls":'
_REASONING = b'"reasoning_content":"'
_USAGE = b'"usage":{'
_USAGE_SPACED = b'"usage": {'
_QUOTE = 34
_SPACE = 32


class StreamResult:
    """What one request measured. Times are `clock.now()` seconds; NaN = never happened."""

    sent_s: float
    end_s: float
    __slots__ = (
        "sent_s",
        "first_token_s",
        "end_s",
        "status",
        "error",
        "message",
        "prompt_tokens",
        "completion_tokens",
        "itl_ms",
        "text",
    )

    def __init__(self):
        self.first_token_s = float("nan")
        self.status = 0
        self.error = 0
        self.message = ""
        self.prompt_tokens = -1
        self.completion_tokens = -1
        self.itl_ms: list[float] = []
        self.text: list[str] | None = None  # the generated text, only with --store-text


def _has_token(line: bytes) -> bool:
    """True if this chunk carries generated text: content, reasoning or a tool call."""
    i = line.find(_CONTENT)
    if i >= 0:
        j = i + 10
        if line[j] == _SPACE:
            j += 1
        if line[j] == _QUOTE and line[j + 1] != _QUOTE:
            return True
    return _TOOL_CALLS in line or _REASONING in line


class ChatClient:
    """One keep-alive connection to an OpenAI-compatible server (one per load-generating user)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        path: str = "/v1/chat/completions",
        store_text: bool = False,
    ):
        self.store_text = store_text
        url = urlsplit(base_url if "://" in base_url else "http://" + base_url)
        self.timeout_s = timeout_s
        prefix = url.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[:-3]
        self.path = prefix + path
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
        if api_key:
            headers["Authorization"] = "Bearer " + api_key
        self.http = HTTPClient(
            url.hostname or "127.0.0.1",
            url.port or (443 if url.scheme == "https" else 80),
            ssl=url.scheme == "https",
            concurrency=1,
            headers=headers,
            connection_timeout=connect_timeout_s,
            network_timeout=timeout_s,
        )

    def close(self) -> None:
        self.http.close()

    def stream(self, body: bytes) -> StreamResult:
        """Send one streamed chat completion and time it. Never raises for server faults."""
        r = StreamResult()
        if self.store_text:
            r.text = []
        r.sent_s = sent = now()
        response = None
        timer = gevent.Timeout(self.timeout_s)
        timer.start()
        try:
            response = self.http.request("POST", self.path, body=body)
            r.status = status = response.status_code
            if status != 200:
                r.error = HTTP_STATUS
                r.message = f"HTTP {status}: " + response.read(300).decode("utf-8", "replace").strip()
                return r
            self._read_events(response, r, sent)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            r.error = TIMEOUT
            r.message = f"no complete response within {self.timeout_s:g} s"
        except (ConnectionRefusedError, socket.gaierror) as e:
            r.error = CONNECT
            r.message = f"connect: {e}"
        except TimeoutError as e:
            r.error = CONNECT if response is None and r.status == 0 and not _sent_anything(e) else TIMEOUT
            r.message = f"{'connect' if r.error == CONNECT else 'read'} timeout: {e}"
        except (OSError, ValueError) as e:
            # reset or closed mid-stream (or before headers: the server went away)
            r.error = BAD_STREAM if response is not None else CONNECT
            r.message = f"{type(e).__name__}: {e}"[:200]
        except Exception as e:  # geventhttpclient's parse errors and the like
            r.error = BAD_STREAM if response is not None else CONNECT
            r.message = f"{type(e).__name__}: {e}"[:200]
        finally:
            timer.close()
            r.end_s = now()
            if r.error and response is not None:
                # a half-read stream cannot be reused on a keep-alive connection
                try:
                    response._sock and response._sock.close()
                except Exception:
                    pass
                response.release()
        return r

    @staticmethod
    def _read_events(response, r: StreamResult, sent: float) -> None:
        readline = response.readline
        gaps = r.itl_ms
        append = gaps.append
        last = 0.0
        tokens = 0
        done = False
        while True:
            line = readline(b"\n")
            if not line:
                break
            if line[:5] != b"data:":
                if line == b"\n" or line == b"\r\n" or line[:1] == b":":
                    continue  # event separator or SSE comment
                r.error = BAD_STREAM
                r.message = "not an SSE data line: " + line[:80].decode("utf-8", "replace")
                return
            if not (
                line.endswith(b"}\n") or line.endswith(b"]\n") or line.endswith(b"}\r\n") or line.endswith(b"]\r\n")
            ):
                r.error = BAD_STREAM  # a data line must hold a whole JSON object, or [DONE]
                r.message = "malformed SSE data: " + line[:80].decode("utf-8", "replace")
                return
            if _has_token(line):
                t = now()
                if tokens:
                    append((t - last) * 1000.0)
                else:
                    r.first_token_s = t
                last = t
                tokens += 1
                if r.text is not None:
                    _keep_text(line, r.text)
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            if payload[:1] != b"{":
                r.error = BAD_STREAM
                r.message = "malformed SSE data: " + payload[:80].decode("utf-8", "replace")
                return
            if payload[:8] == b'{"error"':
                r.error = BAD_STREAM
                r.message = "error event: " + payload[:200].decode("utf-8", "replace")
                return
            if _USAGE in payload or _USAGE_SPACED in payload:
                try:
                    usage = json.loads(payload)["usage"]
                    r.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    r.completion_tokens = int(usage.get("completion_tokens") or 0)
                except (ValueError, KeyError, TypeError):
                    r.error = BAD_STREAM
                    r.message = "unreadable usage chunk"
                    return
        # usage comes last: `transformers serve` ends its stream there, with no [DONE]
        if not done and r.completion_tokens < 0:
            r.error = BAD_STREAM
            r.message = "stream ended before [DONE]"
        elif not tokens:
            r.error = NO_TOKENS
            r.message = "stream finished without a content token"


def _keep_text(line: bytes, out: list[str]) -> None:
    """--store-text only: the slow path that parses the chunk."""
    try:
        delta = json.loads(line[5:])["choices"][0]["delta"]
    except (ValueError, KeyError, IndexError, TypeError):
        return
    for key in ("content", "reasoning_content"):
        if delta.get(key):
            out.append(delta[key])
    for call in delta.get("tool_calls") or []:
        fn = call.get("function") or {}
        out.append((fn.get("name") or "") + (fn.get("arguments") or ""))


def _sent_anything(e: BaseException) -> bool:
    # geventhttpclient raises the same timeout type for connect and read; a connect
    # timeout's message says so
    return "connect" not in str(e).lower()
