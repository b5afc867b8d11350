"""The user's own prompt files (loadtest/prompt_files.py, loadtest/chat.py): each format read as
written, told from its content, bad rows named by file and line, and sent to the server byte for
byte but for the per-request marker at its documented place."""

import json
import re

import pytest

from llmcap.errors import DatasetError
from llmcap.profile import DatasetSettings
from loadtest.datasets import REPLY, load_prompts, without_reply
from loadtest.prompt_files import detect_format, read_prompt_file
from loadtest.tasks import CHAT, for_dataset
from tests.conftest import REPO, run_locust
from tests.stub_server import text_tokens_of

FILES = REPO / "tests" / "fixtures" / "prompt_files"
SKY = "What colour is the sky on a clear day?"
ONE_WORD = {"role": "system", "content": "You answer in one word."}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FILES / name).read_text().splitlines() if line.strip()]


# (file, --prompt-column, the format told from it, the records it must give)
EXPECTED = [
    (
        "chat.jsonl",
        "prompt",
        "chat",
        [
            {"messages": jsonl("chat.jsonl")[0]["messages"]},
            {"messages": jsonl("chat.jsonl")[1]["messages"], "max_tokens": 8},
            {"messages": jsonl("chat.jsonl")[2]["messages"]},  # its "id" is not sent
        ],
    ),
    (
        "batch.jsonl",
        "prompt",
        "batch",
        [
            {"messages": line["body"]["messages"], "max_tokens": n}
            for line, n in zip(jsonl("batch.jsonl"), (1000, 1000, 24), strict=True)
        ],
    ),
    (
        "sharegpt.json",
        "prompt",
        "sharegpt",
        [
            {
                "messages": [
                    user(
                        "Summarize the main ideas of Jeff Walker's Product Launch Formula into bullet points as it "
                        "pertains to a growth marketing agency implementing these strategies and tactics for their "
                        "clients..."
                    )
                ],
                REPLY: "Here are the main ideas of Jeff Walker's Product Launch Formula that can be applied by a "
                "growth marketing agency for their clients:\n\n1. Identify the target audience and their needs.",
            },
            {
                "messages": [
                    {"role": "system", "content": "You are a terse assistant."},
                    user("How to tell if a customer segment is well segmented? In 3 bullet points."),
                ],
                REPLY: "1. Homogeneity\n2. Distinctiveness\n3. Stability",
            },
            {
                "messages": [
                    user(
                        '<div><p>Unicode and markup pass through as they are: naïve café, 東京, "quoted" \\ '
                        "backslash</p></div>"
                    )
                ],
                REPLY: "Noted.",
            },
        ],
    ),
    (
        "prompts.txt",
        "prompt",
        "text",
        [
            {"messages": [user("Write a haiku about load testing.")]},
            {"messages": [user('Explain Little\'s law in one sentence, with "quotes" and a tab:\there.')]},
            {"messages": [user("Ünïcödé prompt: 日本語で答えてください。")]},
        ],
    ),
    (
        "prompts.csv",
        "prompt",
        "csv",
        [
            {"messages": [user('A prompt with a comma, and "quotes"')], "max_tokens": 16},
            {"messages": [user("A prompt over\ntwo lines")]},
            {"messages": [user("Plain prompt")], "max_tokens": 32},
        ],
    ),
    (
        "prompts.jsonl",
        "text",
        "jsonl",
        [
            {"messages": [user("Translate to French: good morning")], "max_tokens": 12},
            {"messages": [user("Translate to French: good night")]},
        ],
    ),
]
IDS = [name for name, *_ in EXPECTED]


@pytest.mark.parametrize("name,column,fmt,records", EXPECTED, ids=IDS)
def test_each_format_is_read_as_written(name, column, fmt, records):
    assert detect_format(FILES / name, column) == fmt
    assert read_prompt_file(FILES / name, "auto", column) == records
    assert read_prompt_file(FILES / name, fmt, column) == records


def test_a_seeded_sample_is_the_same_sample():
    task = for_dataset(CHAT, DatasetSettings(task="chat"))
    a, b = (load_prompts(task, FILES / "batch.jsonl", seed=7, sample=2) for _ in range(2))
    assert a.requests == b.requests and len(a) == 2


@pytest.mark.parametrize(
    "content,fmt,message",
    [
        ('{"messages": []}\n', "auto", "p.jsonl:1: messages: expected a non-empty list"),
        (
            '{"messages": [{"role": "user", "content": "a"}]}\n{"messages": [{"content": "b"}]}\n',
            "auto",
            "p.jsonl:2: messages[0]: expected {role:",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}\n',
            "auto",
            "p.jsonl:1: output length: expected at least 1 token",
        ),
        (
            '{"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "a"}}\n',
            "auto",
            "p.jsonl:1: url: expected /v1/chat/completions",
        ),
        ('{"question": "a"}\n', "auto", "p.jsonl:1: a JSON object without messages, body, conversations or 'prompt'"),
        ('{"prompt": "a"}\n{"prompt": \n', "auto", "p.jsonl:2: not valid JSON"),
        ('{"prompt": "a"}\n{"text": "b"}\n', "auto", "p.jsonl:2: missing field 'prompt'"),
        (
            '[{"conversations": [{"from": "human", "value": "a"}]}, {"turns": []}]',
            "sharegpt",
            "p.jsonl: entry 2: expected an object with a 'conversations' list",
        ),
        (
            '[{"conversations": [{"from": "bot", "value": "a"}]}]',
            "sharegpt",
            "p.jsonl: entry 1: conversations[0]: expected {from:",
        ),
        ("\n\n", "text", "p.jsonl: dataset is empty"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, content, fmt, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError) as e:
        read_prompt_file(path, fmt)
    assert str(e.value).startswith(f"{tmp_path}/{message}"), str(e.value)


MARKER = re.compile(r"^\[[0-9a-f]+\.[0-9a-f]+\] ")


def marker_index(records: list[dict]) -> int:
    """The documented place: the first message not every prompt shares (the last, where all are alike)."""
    lists = [r["messages"] for r in records]
    shortest = min(len(m) for m in lists)
    common = next((i for i in range(shortest) if any(m[i] != lists[0][i] for m in lists)), shortest)
    return min(common, shortest - 1)


@pytest.mark.parametrize("name,column,fmt,records", EXPECTED, ids=IDS)
def test_what_the_server_receives_is_the_file_byte_for_byte(stub, tmp_path, name, column, fmt, records):
    """The messages as written; the output length the file's own (a ShareGPT reply's, in the server's
    tokens), else --max-tokens; a reply itself is never sent."""
    stub.configure(tokenize=1)
    records = [
        {**without_reply(r), **({"max_tokens": text_tokens_of(r[REPLY])} if REPLY in r else {})} for r in records
    ]
    args = ["--dataset", str(FILES / name), "--prompt-column", column, "--max-tokens", "64"]
    args += ["--rps", "20", "--duration", "1", "--run-dir", str(tmp_path), "--no-report"]
    run = run_locust("loadtest/chat.py", stub.url, *args)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "unique_marker is off" not in run.stdout  # the marker keeps the cache to what prompts share
    bodies = stub.stats()["bodies"]
    assert len(bodies) >= len(records)
    at = marker_index(records)
    sent = []
    for body in bodies:
        messages = body["messages"]
        assert MARKER.match(messages[at]["content"]), messages[at]
        messages[at]["content"] = MARKER.sub("", messages[at]["content"], count=1)
        assert not any(MARKER.match(m["content"]) for m in messages)
        own_length = body["max_tokens"] != 64  # the file's own, where it gives one; else --max-tokens
        sent.append({"messages": messages, **({"max_tokens": body["max_tokens"]} if own_length else {})})
        assert REPLY not in body
    assert all(s in records for s in sent) and all(r in sent for r in records)


def test_sharegpt_lengths_need_the_servers_tokenizer_or_a_fixed_length(stub, tmp_path):
    """Without /tokenize, a ShareGPT file's reply lengths cannot be counted: one line naming the way
    out, exit 2, no request; --output-lengths fixed sends --max-tokens for every prompt instead."""
    args = ["--dataset", str(FILES / "sharegpt.json"), "--max-tokens", "64", "--rps", "20", "--duration", "1"]
    args += ["--run-dir", str(tmp_path), "--no-report"]
    run = run_locust("loadtest/chat.py", stub.url, *args)
    assert run.returncode == 2 and "/tokenize: ShareGPT reply lengths need the server's tokenizer" in run.stderr
    assert "--output-lengths fixed sends --max-tokens instead" in run.stderr and stub.stats()["requests"] == 0
    run = run_locust("loadtest/chat.py", stub.url, *args, "--output-lengths", "fixed")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    bodies = stub.stats()["bodies"]
    assert bodies and all(b["max_tokens"] == 64 and REPLY not in b for b in bodies)


def test_the_chat_task_without_a_file_fails_before_any_load(stub, tmp_path):
    run = run_locust("loadtest/chat.py", stub.url, "--rps", "1", "--duration", "1", "--run-dir", str(tmp_path / "r"))
    assert run.returncode == 2 and "task chat: name the prompt file with --dataset FILE" in run.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "a"}]}\n{"messages": "b"}\n')
    run = run_locust("loadtest/chat.py", stub.url, "--dataset", str(bad), "--run-dir", str(tmp_path / "r"))
    assert run.returncode == 2 and f"{bad}:2: messages: expected a non-empty list" in run.stderr
    assert stub.stats()["requests"] == 0 and "Traceback" not in run.stderr


def test_a_replayed_file_without_the_marker_warns_that_the_prefix_cache_flatters(stub, tmp_path):
    """With the per-request marker off, every repeat of a prompt is a whole-prompt cache hit: said at start."""
    profile = tmp_path / "p.yaml"
    serving = f"serving: {{engine: external, url: '{stub.url}'}}\n"
    profile.write_text(
        f"dataset: {{task: chat, path: {FILES / 'prompts.txt'}}}\nrequest: {{unique_marker: false}}\n{serving}"
    )
    args = ["--llmcap-profile", str(profile), "--rps", "20", "--duration", "1", "--run-dir", str(tmp_path / "r")]
    run = run_locust("loadtest/chat.py", stub.url, *args, "--no-report")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "request.unique_marker is off: the 3 prompts repeat every 3 requests" in run.stdout
    sent = [b["messages"][-1]["content"] for b in stub.stats()["bodies"]]
    assert len(sent) > 3 and not any(MARKER.match(text) for text in sent) and len(set(sent)) == 3
