"""The launcher on the real vLLM CPU engine: start, answer, record, stop, and fail fast."""

import json
import time

import pytest

from loadtest.client import ChatClient
from serving.launcher import Server, ServerError
from tests.conftest import free_port
from tests.engine import cpu_profile, group_alive, needs_cpu_support, needs_engine

pytestmark = [needs_engine, pytest.mark.engine]

BODY = json.dumps(
    {
        "model": "tiny-qwen3",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 12,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "SELECT the answer, please."}],
    }
).encode()


@pytest.mark.parametrize(
    "variant,cache_dtype",
    [
        ("bf16", ("auto", "bfloat16")),
        ("fp32", ("auto", "float32")),
        pytest.param("fp8-kv", ("fp8",), marks=needs_cpu_support({"kv_cache_dtype": "fp8"})),
    ],
)
def test_variant_starts_answers_records_and_stops(tmp_path, variant, cache_dtype):
    profile = cpu_profile()
    server = Server(profile, variant, tmp_path, port=free_port())
    with server:
        r = ChatClient(server.url).stream(BODY)
        assert r.error == 0, r.message
        assert r.completion_tokens == 12 and r.prompt_tokens > 5
        # a chunk per token that decodes to text (byte-level pieces of a random model may not)
        assert 5 <= len(r.itl_ms) <= 11
        config = json.loads((tmp_path / "server" / "config.json").read_text())
        pgid = server.proc.pid
    assert config["kv_cache_dtype"] in cache_dtype, config
    assert config["command"][0].endswith("python") and "--port" in config["command"]
    assert config["cache_config"].get("cache_dtype") in cache_dtype
    assert config["vllm_version"]
    time.sleep(0.5)
    assert server.proc.poll() is not None and not group_alive(pgid), "a server process was left behind"


def test_bad_model_path_fails_fast_with_the_reason(tmp_path):
    profile = cpu_profile()
    profile.model.id = str(tmp_path / "no-such-model")
    t0 = time.time()
    with pytest.raises(ServerError) as e:
        Server(profile, "bf16", tmp_path, port=free_port()).start()
    assert time.time() - t0 < 90
    assert "exited with code" in str(e.value) and "no-such-model" in str(e.value)


def test_busy_port_fails_at_once(tmp_path):
    import socket

    profile = cpu_profile()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t0 = time.time()
        with pytest.raises(ServerError, match=f"port {port} .* already in use"):
            Server(profile, "bf16", tmp_path, port=port).start()
        assert time.time() - t0 < 5
