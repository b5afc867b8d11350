"""Each task type on its real data from ../shared/datasets: record counts and OpenAI-valid requests."""

import json

import pytest

from loadtest.datasets import DatasetError, load_prompts, read_csv, read_trec
from loadtest.tasks import TASKS, normalise_history
from tests.conftest import SHARED

EXPECTED_RECORDS = {
    "text2sql": 50,
    "smart_home": 50,
    "git_assistant": 116,
    "docstring": 253,
    "hotpotqa": 100,
    "banking77": 96,
    "ecommerce": 96,
    "trec": 500,
}
FILES = {
    "text2sql": "text2sql/test.jsonl",
    "smart_home": "smart_home/test.jsonl",
    "git_assistant": "git_assistant/test.jsonl",
    "docstring": "docstring/test.jsonl",
    "hotpotqa": "hotpotqa/test.csv",
    "banking77": "banking77/distil_8class/test.csv",
    "ecommerce": "ecommerce/test.csv",
    "trec": "trec/TREC_10.label",
}
ROLES = {"system", "user", "assistant", "tool"}


def check_openai_request(body: dict) -> None:
    """The parts of the chat-completions request schema a strict server checks."""
    messages = body["messages"]
    assert isinstance(messages, list) and messages
    open_calls: set[str] = set()
    for m in messages:
        assert m["role"] in ROLES, m
        if m["role"] == "assistant" and m.get("tool_calls"):
            assert open_calls == set(), "a tool call was not answered before the next assistant turn"
            for call in m["tool_calls"]:
                assert call["type"] == "function" and isinstance(call["id"], str) and call["id"]
                assert isinstance(call["function"]["name"], str)
                assert isinstance(call["function"]["arguments"], str)
                json.loads(call["function"]["arguments"])  # a JSON object, as a string
                open_calls.add(call["id"])
            assert m.get("content") is None or isinstance(m["content"], str)
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_calls
            open_calls.discard(m["tool_call_id"])
            assert isinstance(m["content"], str)
        else:
            assert open_calls == set(), "a user turn came before the tool results"
            assert isinstance(m["content"], str) and m["content"]
    assert messages[-1]["role"] == "user"
    if "tools" in body:
        assert body["tool_choice"] in ("auto", "required", "none")
        for tool in body["tools"]:
            assert tool["type"] == "function"
            fn = tool["function"]
            assert isinstance(fn["name"], str) and fn["parameters"]["type"] == "object"
    json.dumps(body)


@pytest.mark.parametrize("name", sorted(EXPECTED_RECORDS))
def test_task_on_real_data(name):
    path = SHARED / "datasets" / FILES[name]
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared datasets are needed for this check)")
    prompts = load_prompts(TASKS[name], path)
    assert len(prompts) == EXPECTED_RECORDS[name]
    for request in prompts.requests:
        check_openai_request(request)
    if name in ("smart_home", "git_assistant"):
        tools = prompts.requests[0]["tools"]
        assert len(tools) == {"smart_home": 6, "git_assistant": 13}[name]
        assert len(json.dumps(tools)) > 2000  # the schemas dominate these prompts


def test_shipped_example_needs_no_shared_data():
    prompts = load_prompts(TASKS["text2sql"])
    assert len(prompts) == 24
    system = prompts.requests[0]["messages"][0]["content"]
    assert "<task_description>" in system and "SQLite" in system
    assert "<question>" in prompts.requests[0]["messages"][1]["content"]


def test_history_normalisation():
    history = [
        {"role": "user", "content": "Lock the garage"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "lock_door", "arguments": {"door": "garage"}}}],
        },
        {"role": "user", "content": "and the front door"},
    ]
    out = normalise_history(history)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user"]
    call = out[1]["tool_calls"][0]
    assert call["id"] == "call_1" and json.loads(call["function"]["arguments"]) == {"door": "garage"}
    assert out[2]["tool_call_id"] == "call_1"
    check_openai_request({"messages": out})


def test_csv_with_quoted_newlines(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('question,answer\n"line one\nline two",a\nplain,b\n')
    rows = read_csv(f, ("question", "answer"))
    assert len(rows) == 2 and rows[0]["question"] == "line one\nline two"
    with pytest.raises(DatasetError, match=r"d.csv:1: header lacks column 'context'"):
        read_csv(f, ("question", "context"))


def test_trec_reader_with_a_latin1_byte(tmp_path):
    f = tmp_path / "t.label"
    f.write_bytes(b"NUM:dist How far is it ?\nHUM:ind Who is the sister\xf0city ?\n")
    rows = read_trec(f)
    assert rows[0] == {"question": "How far is it ?", "answer": "NUM", "fine": "dist"}
    assert len(rows) == 2
    f.write_text("no label here\n")
    with pytest.raises(DatasetError, match="t.label:1: expected 'COARSE:fine question'"):
        read_trec(f)


def test_seeded_sample():
    path = SHARED / "datasets" / "trec" / "TREC_10.label"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    a = load_prompts(TASKS["trec"], path, sample=200, seed=1)
    b = load_prompts(TASKS["trec"], path, sample=200, seed=1)
    c = load_prompts(TASKS["trec"], path, sample=200, seed=2)
    assert len(a) == 200 and a.hashes == b.hashes and a.hashes != c.hashes
