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
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent


class DatasetError(ValueError):
    """One line for the user: file, line and what is wrong."""


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

The task instance will arrive inside a <question> block in the next message.
Produce only the answer to that instance, in the format the task description
requires, and nothing else."""

USER_TEMPLATE = """Solve the task described in the system message for the question below.
Output only the solution.

<question>
{question}
</question>"""

TEXT2SQL_TASK_DESCRIPTION = (
    "Translate the natural-language question into one SQLite query over the given schema. "
    "Use only tables and columns that appear in the schema, write SQL keywords in upper case, "
    "and return the query alone, ending with a semicolon, without any explanation."
)


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
    expected_field: str | None = None  # the reference answer, for `llmcap inspect`


def _text2sql_build(record: dict, dataset: Path) -> dict:
    system = SYSTEM_TEMPLATE.format(task_description=task_description(dataset, TEXT2SQL_TASK_DESCRIPTION))
    return {"messages": [{"role": "system", "content": system},
                         {"role": "user", "content": USER_TEMPLATE.format(question=record["question"].strip())}]}


TEXT2SQL = Task(
    name="text2sql",
    default_dataset=REPO / "examples" / "text2sql" / "test.jsonl",
    read=lambda path: read_jsonl(path, ("question",)),
    build=_text2sql_build,
    expected_field="answer",
)


@dataclasses.dataclass
class Prompts:
    """The requests of a dataset, in a seeded shuffled order, cycled forever."""

    requests: list[dict]
    hashes: list[int]
    order: list[int]

    def __len__(self) -> int:
        return len(self.requests)

    def pick(self, seq: int) -> int:
        return self.order[seq % len(self.order)]


def load_prompts(task: Task, dataset: str | Path | None = None, *, seed: int = 0,
                 sample: int | None = None) -> Prompts:
    path = Path(dataset) if dataset else task.default_dataset
    records = task.read(path)
    if sample is not None and sample < len(records):
        records = random.Random(seed).sample(records, sample)
    requests, hashes = [], []
    for number, record in enumerate(records, 1):
        try:
            request = task.build(record, path)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{path}: record {number}: cannot build a request ({type(e).__name__}: {e})") from None
        requests.append(request)
        digest = hashlib.blake2b(json.dumps(request, sort_keys=True).encode(), digest_size=8).digest()
        hashes.append(int.from_bytes(digest, "little"))
    order = list(range(len(requests)))
    random.Random(seed).shuffle(order)
    return Prompts(requests, hashes, order)


TASKS: dict[str, Task] = {TEXT2SQL.name: TEXT2SQL}
