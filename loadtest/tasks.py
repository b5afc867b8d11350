"""The reference benchmark's task types: how each dataset's records become chat requests.

Each task names its reader, its default file, and a template. Where the source
repository shows how its model was prompted (see each dataset's SOURCE.md), the
template follows that format in llmcap's own words; where it does not
(Banking77, e-commerce, TREC), the template is the same plain pattern: the task
and the class list in the system message, the input in a <question> block.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from llmcap.profile import DatasetSettings
from loadtest.datasets import (
    QUESTION_ONLY,
    REPLY,
    REPO,
    SYSTEM_TEMPLATE,
    USER_TEMPLATE,
    WITH_CONTEXT,
    DatasetError,
    Task,
    read_csv,
    read_jsonl,
    read_trec,
    task_description,
)
from loadtest.prompt_files import read_prompt_file
from loadtest.scorers import score_call, score_label, score_qa, score_sql, score_text

SHARED = REPO.parent / "shared" / "datasets"

CONTEXT_USER_TEMPLATE = """Solve the task described in the system message, using the context block.
Output only the solution.

<context>
{context}
</context>

<question>
{question}
</question>"""

TOOL_SYSTEM_TEMPLATE = """You are a tool-calling model working on a single, well defined task.

<task_description>
{task_description}
</task_description>

Answer the conversation so far with exactly one call to one of the functions you are given,
with arguments that match its schema. Do not answer in prose and do not call more than one
function. Leave out any parameter the user did not specify."""


def _job(dataset: Path) -> dict:
    jd = dataset.parent / "job_description.json"
    try:
        return json.loads(jd.read_text())
    except OSError:
        raise DatasetError(f"{jd}: not found (this task takes its tool schemas or classes from it)") from None
    except ValueError:
        raise DatasetError(f"{jd}: not valid JSON") from None


def _plain(system_task: str, question: str, context: str | None = None) -> list[dict]:
    inputs = WITH_CONTEXT if context is not None else QUESTION_ONLY
    system = SYSTEM_TEMPLATE.format(task_description=system_task, inputs=inputs)
    user = (
        CONTEXT_USER_TEMPLATE.format(context=context.strip(), question=question.strip())
        if context is not None
        else USER_TEMPLATE.format(question=question.strip())
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- question answering -----------------------------------------------------------------------
TEXT2SQL_TASK_DESCRIPTION = (
    "Translate the natural-language question into one SQLite query over the given schema. "
    "Use only tables and columns that appear in the schema, write SQL keywords in upper case, "
    "and return the query alone, ending with a semicolon, without any explanation."
)

TEXT2SQL = Task(
    name="text2sql",
    default_dataset=REPO / "examples" / "text2sql" / "test.jsonl",
    read=lambda path: read_jsonl(path, ("question",)),
    build=lambda r, ds: {"messages": _plain(task_description(ds, TEXT2SQL_TASK_DESCRIPTION), r["question"])},
    expected_field="answer",
    score=score_sql,
)

DOCSTRING = Task(
    name="docstring",
    default_dataset=SHARED / "docstring" / "test.jsonl",
    read=lambda path: read_jsonl(path, ("question", "context")),
    # Qwen3's switch to skip thinking, as the source client sends it
    build=lambda r, ds: {
        "messages": [
            {**m, "content": m["content"] + "\n/no_think"}
            for m in _plain(
                task_description(ds, "Write a Google-style docstring for the function."), r["question"], r["context"]
            )
        ]
    },
    expected_field="answer",
    score=score_text,
)

HOTPOTQA = Task(
    name="hotpotqa",
    default_dataset=SHARED / "hotpotqa" / "test.csv",
    read=lambda path: read_csv(path, ("question", "context")),
    build=lambda r, ds: {
        "messages": _plain(
            task_description(ds, "Answer the question using information in the context."), r["question"], r["context"]
        )
    },
    expected_field="answer",
    score=score_qa,
)


# -- classification ---------------------------------------------------------------------------
def _classes_text(classes: dict[str, str] | list[str]) -> str:
    if isinstance(classes, dict):
        return "\n".join(f"- {name}: {desc}" for name, desc in classes.items())
    return "\n".join(f"- {name}" for name in classes)


def _classify(description: str, classes) -> str:
    return (
        f"{description}\n\nAnswer with exactly one class name from this list and nothing else:\n"
        f"{_classes_text(classes)}"
    )


def _job_classes(ds: Path) -> tuple[str, dict]:
    jd = _job(ds)
    return jd["task_description"], jd["classes_description"]


def _banking_classes(ds: Path) -> tuple[str, dict | list]:
    categories = ds.parent / "categories.json"
    if categories.is_file():  # PolyAI's full 77-intent release
        return "Classify the bank customer's message into one of the intents.", json.loads(categories.read_text())
    return _job_classes(ds)


def _read_banking(path: Path) -> list[dict]:
    # two published forms: Distil's 8-class `question,answer`, PolyAI's 77-class `text,category`
    with open(path, encoding="utf-8") as f:
        header = f.readline() if path.is_file() else ""
    if header.startswith("text,category"):
        return [{"question": r["text"], "answer": r["category"]} for r in read_csv(path, ("text", "category"))]
    return read_csv(path, ("question", "answer"))


BANKING77 = Task(
    name="banking77",
    default_dataset=SHARED / "banking77" / "distil_8class" / "test.csv",
    read=_read_banking,
    build=lambda r, ds: {"messages": _plain(_classify(*_banking_classes(ds)), r["question"])},
    expected_field="answer",
    score=score_label,
)

ECOMMERCE = Task(
    name="ecommerce",
    default_dataset=SHARED / "ecommerce" / "test.csv",
    read=lambda path: read_csv(path, ("question",)),
    build=lambda r, ds: {"messages": _plain(_classify(*_job_classes(ds)), r["question"])},
    expected_field="answer",
    score=score_label,
)

TREC_CLASSES = {
    "ABBR": "the question asks what an abbreviation stands for or for its short form",
    "DESC": "the question asks for a description, definition, manner or reason",
    "ENTY": "the question asks for an entity: an object, animal, colour, event, product, term and the like",
    "HUM": "the question asks for a person, a group of people, or a description of one",
    "LOC": "the question asks for a location: a city, country, mountain, state or other place",
    "NUM": "the question asks for a number: a count, date, distance, money, period, speed and the like",
}

TREC = Task(
    name="trec",
    default_dataset=SHARED / "trec" / "TREC_10.label",
    read=read_trec,
    build=lambda r, ds: {
        "messages": _plain(
            _classify("Classify the question by the type of answer it asks for.", TREC_CLASSES), r["question"]
        )
    },
    expected_field="answer",
    score=score_label,
)


# -- function calling -------------------------------------------------------------------------
def normalise_history(messages: list[dict]) -> list[dict]:
    """Make stored conversations acceptable to a strict OpenAI-compatible server: tool-call arguments
    as JSON strings, an id on every call, and a tool result after each assistant call."""
    out: list[dict] = []
    call = 0
    for message in messages:
        message = dict(message)
        calls = message.get("tool_calls") or []
        if message.get("role") == "assistant" and calls:
            fixed = []
            for c in calls:
                fn = dict(c.get("function") or {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments") or {})
                call += 1
                fixed.append({"id": c.get("id") or f"call_{call}", "type": "function", "function": fn})
            message["tool_calls"] = fixed
            message["content"] = message.get("content") or None
            out.append(message)
            out.extend({"role": "tool", "tool_call_id": c["id"], "content": '{"status": "ok"}'} for c in fixed)
        else:
            out.append(message)
    return out


def _smart_home(r: dict, ds: Path) -> dict:
    jd = _job(ds)
    try:
        history = json.loads(r["question"])
    except ValueError:
        raise DatasetError("'question' is not a JSON list of messages") from None
    system = {"role": "system", "content": TOOL_SYSTEM_TEMPLATE.format(task_description=jd["task_description"].strip())}
    return {
        "messages": [system, *normalise_history(history)],
        "tools": jd["tools"],
        "tool_choice": "required",
        "chat_template_kwargs": {"enable_thinking": False},
    }


SMART_HOME = Task(
    name="smart_home",
    default_dataset=SHARED / "smart_home" / "test.jsonl",
    read=lambda path: read_jsonl(path, ("question",)),
    build=_smart_home,
    expected_field="answer",
    score=score_call,
)

GIT_RULES = """Return only a JSON object with exactly two keys, "name" and "parameters", and nothing
before or after it. No trailing commas. For example:
{"name": "git_status", "parameters": {}}
{"name": "git_add", "parameters": {"files": ["README.md"]}}"""

GIT_EXAMPLES = [
    ("apply stash@{5}", '{"name": "git_stash", "parameters": {"action": "apply", "stash_ref": "stash@{5}"}}'),
    ('commit with message "fix: typos"', '{"name": "git_commit", "parameters": {"message": "fix: typos"}}'),
]


def _git(r: dict, ds: Path) -> dict:
    jd = _job(ds)
    system = TOOL_SYSTEM_TEMPLATE.format(task_description=jd["task_description"].strip()) + "\n\n" + GIT_RULES
    examples = "\n".join(f"<example><question>{q}</question><answer>{a}</answer></example>" for q, a in GIT_EXAMPLES)
    user = (
        f"{examples}\n\nNow answer the request below in the same way.\n\n<question>{r['question'].strip()}</question>"
    )
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "tools": jd["tools"],
        "tool_choice": "required",
    }


GIT_ASSISTANT = Task(
    name="git_assistant",
    default_dataset=SHARED / "git_assistant" / "test.jsonl",
    read=lambda path: read_jsonl(path, ("question",)),
    build=_git,
    expected_field="answer",
    score=score_call,
)


def _generated(path: Path) -> list[dict]:
    raise DatasetError(
        "task synthetic: its prompts are built against the running server (loadtest/synthetic_prompts.py), "
        "not read from a file"
    )


# no dataset: prompts of drawn token lengths, built with the served model's tokenizer at start
SYNTHETIC = Task(
    name="synthetic",
    default_dataset=Path("(generated)"),
    read=_generated,
    build=lambda record, path: record,
    generated=True,
)

NO_FILE = Path("(no prompt file)")


def _no_prompt_file(path: Path) -> list[dict]:
    raise DatasetError("task chat: name the prompt file with --dataset FILE (or dataset.path in a profile)")


# the user's own prompts, sent as written (loadtest/prompt_files.py): no template, no reference answers
CHAT = Task(name="chat", default_dataset=NO_FILE, read=_no_prompt_file, build=lambda record, path: record)

ALL = [TEXT2SQL, SMART_HOME, GIT_ASSISTANT, DOCSTRING, HOTPOTQA, BANKING77, ECOMMERCE, TREC, SYNTHETIC, CHAT]
TASKS: dict[str, Task] = {t.name: t for t in ALL}


def for_dataset(task: Task, dataset: DatasetSettings) -> Task:
    """The task as `dataset` configures it: the chat task reads its file in the format named (or
    told from the content) with the prompt column named, and its output lengths unless fixed."""
    if task.name != CHAT.name:
        return task

    def read(path: Path) -> list[dict]:
        if path == NO_FILE:
            return _no_prompt_file(path)
        records = read_prompt_file(path, dataset.format, dataset.prompt_column)
        if dataset.output_lengths == "fixed":
            return [{k: v for k, v in r.items() if k not in ("max_tokens", REPLY)} for r in records]
        return records

    return dataclasses.replace(task, read=read)
