"""The launcher on the real vLLM CPU engine: start, answer, record, stop, and fail fast."""

import json
import time

import pytest

from loadtest.client import ChatClient
from serving.launcher import Server, ServerError
from tests.conftest import free_port
from tests.engine import cpu_profile, needs_engine

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


def check_answer(url: str) -> None:
    r = ChatClient(url).stream(BODY)
    assert r.error == 0, r.message
    assert r.completion_tokens == 12 and r.prompt_tokens > 5
    # a chunk per token that decodes to text (byte-level pieces of a random model may not)
    assert 5 <= len(r.itl_ms) <= 11


def check_recorded(config: dict, cache_dtype: tuple[str, ...]) -> None:
    """What a started server records of itself (server/config.json), for the variant's KV cache dtype."""
    assert config["kv_cache_dtype"] in cache_dtype, config
    assert config["command"][0].endswith("python") and "--port" in config["command"]
    assert config["cache_config"].get("cache_dtype") in cache_dtype
    assert config["vllm_version"]


def test_the_shared_server_answers_and_records_what_it_runs(cpu_server):
    """bf16 as the launcher starts it (the shared server). Its stop, and fp32 started, answering,
    recorded and stopped, are checked where a plan launches both (test_plan_engine.py)."""
    check_answer(cpu_server.url)
    check_recorded(json.loads((cpu_server.run_dir / "server" / "config.json").read_text()), ("auto", "bfloat16"))


def test_bad_model_path_fails_fast_with_the_reason(tmp_path):
    """Its own start, which must fail: a server that cannot load its model."""
    profile = cpu_profile()
    profile.model.id = str(tmp_path / "no-such-model")
    t0 = time.time()
    with pytest.raises(ServerError) as e:
        Server(profile, "bf16", tmp_path, port=free_port()).start()
    assert time.time() - t0 < 90
    assert "exited with code" in str(e.value) and "no-such-model" in str(e.value)


def test_busy_port_fails_at_once(tmp_path):
    """Refused before vLLM starts: no server process at all."""
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
