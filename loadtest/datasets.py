"""Datasets and the prompt templates that turn their records into chat requests.

A `Task` names a reader (how to get records out of a file) and a template (how a
record becomes the request's `messages`, plus e.g. `tools`). Bad input fails
with one `DatasetError` line naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from llmcap.errors import DatasetError

REPO = Path(__file__).resolve().parent.parent


def read_jsonl(path: str | Path, fields: tuple[str, ...]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    records = []
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
            missing = [k for k in fields if k not in record]
            if missing:
                raise DatasetError(f"{path}:{number}: missing field {missing[0]!r}")
            records.append(record)
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    return records


def read_csv(path: str | Path, fields: tuple[str, ...]) -> list[dict]:
    """CSV with a header row; quoted fields may hold newlines (use the csv module, not lines)."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in fields if k not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"{path}:1: header lacks column {missing[0]!r} (has: {', '.join(reader.fieldnames or [])})"
            )
        records = []
        for record in reader:
            if any(record.get(k) is None for k in fields):
                raise DatasetError(f"{path}:{reader.line_num}: record has fewer columns than the header")
            records.append(record)
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    return records


def read_trec(path: str | Path) -> list[dict]:
    """Li & Roth's TREC format: `COARSE:fine question tokens` per line. The training file holds one
    byte that is not UTF-8, as in the original distribution: read as Latin-1 where UTF-8 fails."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, _, question = line.partition(" ")
        coarse, colon, fine = label.partition(":")
        if not colon or not question:
            raise DatasetError(f"{path}:{number}: expected 'COARSE:fine question', got {line[:40]!r}")
        records.append({"question": question.strip(), "answer": coarse, "fine": fine})
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    return records


# The reference benchmark's chat format: a generic "problem solving model" system
# message with the task description inside <task_description> tags, and a user
# message that wraps the record in <question> tags. Worded for llmcap.
SYSTEM_TEMPLATE = """You are a problem solving model working on a single, well defined task.
You will be given the task description below and then one instance of the task.
Read the instance carefully, apply the task description exactly, and reply with
the solution only: no preamble, no explanation, no restating of the question,
no markdown fences unless the task asks for them. If the instance is ambiguous,
choose the most reasonable reading and still answer in the required format.

<task_description>
{task_description}
</task_description>

{inputs}
Produce only the answer to that instance, in the format the task description
requires, and nothing else."""
QUESTION_ONLY = "The task instance will arrive inside a <question> block in the next message."
WITH_CONTEXT = (
    "The next message holds a <context> block with the material to use and a <question> block\nwith the task instance."
)

USER_TEMPLATE = """Solve the task described in the system message for the question below.
Output only the solution.

<question>
{question}
</question>"""


def task_description(dataset: Path, default: str) -> str:
    """The dataset folder's own job_description.json wins over the built-in text."""
    jd = dataset.parent / "job_description.json"
    if jd.is_file():
        try:
            return json.loads(jd.read_text())["task_description"].strip()
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"{jd}: expected a JSON object with a 'task_description' string") from None
    return default


@dataclasses.dataclass
class Task:
    name: str
    default_dataset: Path
    read: Callable[[Path], list[dict]]
    build: Callable[[dict, Path], dict]  # record, dataset path -> request fields (messages, ...)
    expected_field: str | None = None  # the reference answer, for `llmcap inspect` and scoring
    # (output, reference answer) -> metrics, the main one first (loadtest/scorers.py)
    score: Callable[[str, str], dict[str, float]] | None = None
    generated: bool = False  # prompts built against the server at start (loadtest/synthetic_prompts.py)


@dataclasses.dataclass
class Prompts:
    """The requests of a dataset, in a seeded shuffled order, cycled forever."""

    requests: list[dict]
    hashes: list[int]
    order: list[int]
    drawn_lengths: list[tuple[int, int]] | None = None  # synthetic prompts: (input, output) tokens as drawn
    replies: list[str | None] | None = None  # ShareGPT: the reply each prompt had, for its length (reply_lengths)

    def __len__(self) -> int:
        return len(self.requests)

    def pick(self, seq: int) -> int:
        return self.order[seq % len(self.order)]


REPLY = "_reply"  # a record's reply text (ShareGPT), kept beside its request, never sent


def without_reply(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != REPLY}


def reply_lengths(prompts: Prompts, count_tokens: Callable[[str], int]) -> None:
    """Each request with a reply and no output length of its own asks for as many tokens as the
    reply had (as `vllm bench serve` replays ShareGPT), counted by the served model's tokenizer."""
    for i, reply in enumerate(prompts.replies or []):
        if reply is not None and "max_tokens" not in prompts.requests[i]:
            prompts.requests[i]["max_tokens"] = max(1, count_tokens(reply))
            prompts.hashes[i] = prompt_hash(prompts.requests[i])
    prompts.replies = None


def prompt_hash(request: dict) -> int:
    """What a sample records of its prompt: 8 bytes of a hash of the request, never its text."""
    digest = hashlib.blake2b(json.dumps(request, sort_keys=True).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def load_prompts(task: Task, dataset: str | Path | None = None, *, seed: int = 0, sample: int | None = None) -> Prompts:
    path = Path(dataset) if dataset else task.default_dataset
    try:
        records = task.read(path)
    except OSError as e:  # a task's default set lives in ../shared, which not every machine has
        raise DatasetError(f"{path}: cannot read the dataset ({e.strerror or e})") from None
    if sample is not None and sample < len(records):
        records = random.Random(seed).sample(records, sample)
    requests, hashes = [], []
    replies = [record.get(REPLY) for record in records]
    for number, record in enumerate(records, 1):
        try:
            request = task.build(without_reply(record), path)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{path}: record {number}: cannot build a request ({type(e).__name__}: {e})") from None
        requests.append(request)
        hashes.append(prompt_hash(request))
    order = list(range(len(requests)))
    random.Random(seed).shuffle(order)
    return Prompts(requests, hashes, order, replies=replies if any(r is not None for r in replies) else None)
