"""Prompt files a user brings, sent as written: the `chat` task's reader.

Each format becomes records `{"messages": [...]}`, with `max_tokens` where the file says how long
the answer is (a Batch API body's `max_tokens`, an `output_tokens` field or column). Nothing is
wrapped around the messages; the per-request marker (`loadtest/bodies.py`) is the only change, at
the start of the first message not every prompt shares. The format is named or told from the
content; a bad row is one `DatasetError` line naming the file and line.

    chat      JSONL, one {"messages": [...]} per line (OpenAI chat; other keys ignored)
    batch     JSONL, the OpenAI Batch API's input: {"custom_id", "method", "url", "body": {"messages", ...}}
    sharegpt  JSON (or JSONL): [{"conversations": [{"from": "human", "value": ...}, ...]}]: the first
              human turn, after the system turn where there is one; the reply to it sets the
              output length (in the served model's tokens: datasets.reply_lengths)
    jsonl     JSONL, a prompt string under the column named (default "prompt")
    csv       CSV with a header, a prompt under the column named
    text      one prompt a line
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from llmcap.errors import DatasetError
from llmcap.profile import DATASET_FORMATS as FORMATS
from loadtest.datasets import REPLY

ROLES = ("system", "user", "assistant", "tool", "developer")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def read_prompt_file(path: str | Path, fmt: str = "auto", column: str = "prompt") -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    if fmt == "auto":
        fmt = detect_format(path, column)
    records = READERS[fmt](path, column)
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    return records


def detect_format(path: Path, column: str) -> str:
    """The format from the content: a JSON array is ShareGPT; a JSON object per line is told by its
    keys; a .csv file is CSV; anything else, one prompt a line."""
    if path.suffix.lower() == ".csv":
        return "csv"
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    if first.lstrip().startswith("["):
        return "sharegpt"
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return "text"
    if not isinstance(record, dict):
        return "text"
    for key, fmt in (("body", "batch"), ("messages", "chat"), ("conversations", "sharegpt"), (column, "jsonl")):
        if key in record:
            return fmt
    raise DatasetError(
        f"{path}:1: a JSON object without messages, body, conversations or {column!r}: name its format "
        f"with --dataset-format ({', '.join(FORMATS[1:])}) or its prompt's key with --prompt-column"
    )


def _json_lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            yield number, record


def _messages(where: str, messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: messages: expected a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
            raise DatasetError(f"{where}: messages[{i}]: expected {{role: {'|'.join(ROLES)}, content: ...}}")
    return messages


def _output_tokens(where: str, value) -> dict:
    """{"max_tokens": N} for a length the file gives, {} where it gives none."""
    if value is None or value == "":
        return {}
    try:
        tokens = int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: output length: expected a whole number of tokens, got {value!r}") from None
    if tokens < 1:
        raise DatasetError(f"{where}: output length: expected at least 1 token, got {tokens}")
    return {"max_tokens": tokens}


def _user(where: str, prompt) -> list[dict]:
    if not isinstance(prompt, str) or not prompt.strip():
        raise DatasetError(f"{where}: expected a non-empty prompt string, got {prompt!r}")
    return [{"role": "user", "content": prompt}]


def read_chat(path: Path, _column: str) -> list[dict]:
    records = []
    for number, r in _json_lines(path):
        where = f"{path}:{number}"
        if "messages" not in r:
            raise DatasetError(f"{where}: missing field 'messages'")
        length = r.get("max_tokens", r.get("max_completion_tokens", r.get("output_tokens")))
        records.append({"messages": _messages(where, r["messages"]), **_output_tokens(where, length)})
    return records


def read_batch(path: Path, _column: str) -> list[dict]:
    records = []
    for number, r in _json_lines(path):
        where = f"{path}:{number}"
        if r.get("url") != "/v1/chat/completions":
            raise DatasetError(f"{where}: url: expected /v1/chat/completions (a chat request), got {r.get('url')!r}")
        body = r.get("body")
        if not isinstance(body, dict) or "messages" not in body:
            raise DatasetError(f"{where}: body: expected a chat completion request with messages")
        length = body.get("max_completion_tokens", body.get("max_tokens"))
        records.append({"messages": _messages(where, body["messages"]), **_output_tokens(where, length)})
    return records


def read_sharegpt(path: Path, _column: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            entries = list(enumerate(json.loads(text), 1))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        label = "entry"
    else:
        entries, label = list(_json_lines(path)), "line"
    records = []
    for number, entry in entries:
        where = f"{path}: {label} {number}" if label == "entry" else f"{path}:{number}"
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            raise DatasetError(f"{where}: expected an object with a 'conversations' list")
        messages, reply = _first_human_turn(where, turns)
        if messages:
            records.append({"messages": messages, **({REPLY: reply} if reply is not None else {})})
    return records


def _first_human_turn(where: str, turns: list) -> tuple[list[dict], str | None]:
    """The system turn (if first) and the first human turn, and the reply to it where the next
    turn is one; ([], None) for a conversation with no human turn."""
    out: list[dict] = []
    for i, turn in enumerate(turns):
        role = SHAREGPT_ROLES.get(str(turn.get("from"))) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("value"), str):
            raise DatasetError(f"{where}: conversations[{i}]: expected {{from: human|gpt|system, value: text}}")
        if role == "system" and not out:
            out.append({"role": "system", "content": turn["value"]})
        elif role == "user":
            after = turns[i + 1] if i + 1 < len(turns) else {}
            after = after if isinstance(after, dict) else {}
            is_reply = SHAREGPT_ROLES.get(str(after.get("from"))) == "assistant" and isinstance(after.get("value"), str)
            reply = after["value"] if is_reply else None
            return [*out, {"role": "user", "content": turn["value"]}], reply
    return [], None


def read_jsonl_column(path: Path, column: str) -> list[dict]:
    records = []
    for number, r in _json_lines(path):
        where = f"{path}:{number}"
        if column not in r:
            raise DatasetError(f"{where}: missing field {column!r} (the prompt's key: --prompt-column)")
        records.append({"messages": _user(where, r[column]), **_output_tokens(where, r.get("output_tokens"))})
    return records


def read_csv_column(path: Path, column: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise DatasetError(
                f"{path}:1: header lacks the prompt column {column!r} (has: {', '.join(reader.fieldnames or [])}; "
                "name it with --prompt-column)"
            )
        records = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            records.append({"messages": _user(where, row[column]), **_output_tokens(where, row.get("output_tokens"))})
    return records


def read_text(path: Path, _column: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [{"messages": _user(f"{path}:{n}", line.rstrip("\n"))} for n, line in enumerate(f, 1) if line.strip()]


READERS = {
    "chat": read_chat,
    "batch": read_batch,
    "sharegpt": read_sharegpt,
    "jsonl": read_jsonl_column,
    "csv": read_csv_column,
    "text": read_text,
}
