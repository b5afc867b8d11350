"""The streaming client against the stub: timing truth, usage, and every error kind."""

import numpy as np
import pytest

from llmcap.rundir import ERROR_KINDS
from loadtest.client import ChatClient
from tests.conftest import free_port

pytestmark = pytest.mark.realtime  # timing against the wall clock: run alone (scripts/test.sh)

BODY = (
    b'{"model":"stub-model","stream":true,"stream_options":{"include_usage":true},"max_tokens":30,'
    b'"messages":[{"role":"user","content":"' + b"x" * 400 + b'"}]}'
)


def kind(r) -> str:
    return ERROR_KINDS[r.error]


def test_ttft_and_inter_token_gaps_are_exact(stub):
    stub.configure(first_delay_ms=300, chunk_delay_ms=20, chunks=20)
    client = ChatClient(stub.url)
    ttfts, gaps = [], []
    for _ in range(5):
        r = client.stream(BODY)
        assert kind(r) == "", r.message
        ttfts.append((r.first_token_s - r.sent_s) * 1000)
        gaps.extend(r.itl_ms)
    assert len(gaps) == 5 * 19
    # no token is seen before the server sent it (a client timing from too late a point would); the
    # typical figure is the server's own. Not "every one within 15 ms": on two shared cores one stream
    # in forty here arrived 15-26 ms late, and one gap in 400 was over 30 ms, stub or client alike
    assert min(ttfts) >= 298 and abs(float(np.median(ttfts)) - 300) <= 15, ttfts
    # a client that buffered chunks would see gaps near 0 and 40 ms, not a few stragglers
    off = [g for g in gaps if abs(g - 20) > 10]
    assert abs(float(np.median(gaps)) - 20) <= 3 and len(off) <= 0.05 * len(gaps), gaps


def test_tokens_come_from_usage(stub):
    stub.configure(chunks=7)
    r = ChatClient(stub.url).stream(BODY)
    assert kind(r) == ""
    # the stub's usage: 1 token per 4 prompt characters (+1), and one per chunk
    assert r.prompt_tokens == 400 // 4 + 1
    assert r.completion_tokens == 7
    assert len(r.itl_ms) == 6


def test_connection_refused_is_connect():
    r = ChatClient(f"http://127.0.0.1:{free_port()}").stream(BODY)
    assert kind(r) == "connect", r.message


@pytest.mark.parametrize("status", [500, 503, 429])
def test_http_status(stub, status):
    stub.configure(fault="status", fault_status=status)
    r = ChatClient(stub.url).stream(BODY)
    assert kind(r) == "http_status" and r.status == status
    assert str(status) in r.message


def test_stalled_stream_times_out(stub):
    stub.configure(fault="stall")
    r = ChatClient(stub.url, timeout_s=1.0).stream(BODY)
    assert kind(r) == "timeout", r.message
    assert 0.9 <= r.end_s - r.sent_s <= 2.5


def test_slow_headers_past_timeout(stub):
    stub.configure(fault="slow_headers", slow_headers_ms=3000)
    r = ChatClient(stub.url, timeout_s=1.0).stream(BODY)
    assert kind(r) == "timeout", r.message


@pytest.mark.parametrize("fault", ["cut", "malformed", "error_event"])
def test_broken_streams_are_bad_stream(stub, fault):
    stub.configure(fault=fault, chunk_delay_ms=1)
    client = ChatClient(stub.url)
    r = client.stream(BODY)
    assert kind(r) == "bad_stream", (fault, r.message)
    # the connection is usable again for the next request
    stub.configure(fault="none")
    assert kind(client.stream(BODY)) == ""


def test_stream_without_tokens(stub):
    stub.configure(fault="no_tokens")
    r = ChatClient(stub.url).stream(BODY)
    assert kind(r) == "no_tokens", r.message


def test_keep_alive_reuses_one_connection(stub):
    client = ChatClient(stub.url)
    for _ in range(20):
        assert kind(client.stream(BODY)) == ""
    assert stub.stats()["requests"] == 20
