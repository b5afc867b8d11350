"""The quality pass: every dataset prompt once, at temperature 0, each answer scored against the
dataset's own reference (the task's scorer, loadtest/scorers.py). What two passes share and whether
a variant keeps the baseline's accuracy are the reports' business (reports/quality.py).

Speed is not measured here: the pass runs at a low, fixed concurrency and each answer ends at the
model's own stop (no `ignore_eos`), up to `accuracy.max_tokens`. It keeps the answers' text in the
run directory, by design: a score nobody can look into is not worth much.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from llmcap.confidence import share_interval
from llmcap.profile import AccuracySettings
from loadtest.datasets import DatasetError, Task
from loadtest.dialect import takes_tool_choice, template_fields
from loadtest.server_api import fetch_json


def scored_records(task: Task, dataset: Path, sample: int | None, seed: int = 0) -> list[tuple[int, dict, str]]:
    """(record number, request fields, reference answer) of every record the pass scores. A record
    that cannot be sent or scored (its reference not the kind of answer the scorer reads) fails
    here, by number, before any request."""
    if task.score is None or task.expected_field is None:
        raise DatasetError(
            f"task {task.name}: has no scorer or reference answers (set accuracy.enabled: false in the profile)"
        )
    try:
        records = task.read(dataset)
    except OSError as e:
        raise DatasetError(f"{dataset}: cannot read the dataset ({e.strerror or e})") from None
    numbered = list(enumerate(records, 1))
    if sample is not None and sample < len(numbered):
        numbered = sorted(random.Random(seed).sample(numbered, sample), key=lambda nr: nr[0])
    out = []
    for number, record in numbered:
        reference = record.get(task.expected_field)
        if reference is None:
            raise DatasetError(f"{dataset}: record {number}: no '{task.expected_field}' to score against")
        try:
            request = task.build(record, dataset)
            task.score(str(reference), str(reference))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{dataset}: record {number}: cannot score it ({type(e).__name__}: {e})") from None
        out.append((number, request, str(reference)))
    return out


def metric_names(task: Task, reference: str) -> list[str]:
    """The task's metrics, main first: what its scorer returns for the reference itself."""
    assert task.score is not None
    return list(task.score(reference, reference))


def answer_text(response: dict) -> str:
    """The answer a chat completion carries: its first tool call, written as the datasets write
    calls ({"name": ..., "parameters": ...}), else its text."""
    message = (response.get("choices") or [{}])[0].get("message") or {}
    calls = message.get("tool_calls") or []
    if calls:
        function = calls[0].get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = arguments  # kept as sent: the scorer will find it is not a call
        return json.dumps({"name": function.get("name"), "parameters": parsed})
    return message.get("content") or ""


def run_pass(
    url: str,
    model: str | None,
    task: Task,
    dataset: Path,
    settings: AccuracySettings,
    engine: str = "vllm",
    timeout_s: float = 120.0,
    api_key: str | None = None,
    chat_template_kwargs: dict | None = None,
) -> tuple[list[dict], dict]:
    """Send every scored record once; return (one row per record, the summary)."""
    items = scored_records(task, dataset, settings.sample)

    def one(item: tuple[int, dict, str]) -> dict:
        number, request, reference = item
        # no model named: the server's only one (vLLM answers to its served name, a proxy to its default)
        body = {**({"model": model} if model else {}), **request}
        body.update(max_tokens=settings.max_tokens, temperature=0.0, stream=False)
        if not takes_tool_choice(engine):
            body.pop("tool_choice", None)
        body.update(template_fields(engine, chat_template_kwargs))
        started = time.monotonic()
        row: dict = {"record": number, "reference": reference, "answer": None, "error": None}
        try:
            row["answer"] = answer_text(fetch_json(f"{url.rstrip('/')}/v1/chat/completions", timeout_s, api_key, body))
        except urllib.error.HTTPError as e:
            row["error"] = f"HTTP {e.code}: {e.read()[:200].decode(errors='replace')}"
        except (OSError, ValueError) as e:
            row["error"] = f"{type(e).__name__}: {e}"
        row["latency_s"] = time.monotonic() - started
        assert task.score is not None
        if row["error"] is None:
            row["scores"] = task.score(row["answer"] or "", reference)
        else:  # a wrong answer, in every reader: the gate must not pass a variant that cannot answer
            row["scores"] = dict.fromkeys(metric_names(task, reference), 0.0)
        return row

    with ThreadPoolExecutor(max(1, settings.concurrency)) as pool:
        rows = list(pool.map(one, items))
    return rows, summarize(rows, task)


def main_scores(rows: list[dict], metric: str) -> np.ndarray:
    return np.array([r["scores"][metric] for r in rows])


def summarize(rows: list[dict], task: Task) -> dict:
    metrics = metric_names(task, rows[0]["reference"]) if rows else []
    main = metrics[0] if metrics else "accuracy"
    values = main_scores(rows, main)
    return {
        "task": task.name,
        "n": len(rows),
        "errors": sum(1 for r in rows if r.get("error")),
        "metric": main,
        "accuracy": float(values.mean()) if len(values) else None,
        "interval": share_interval(values),
        "metrics": {m: float(main_scores(rows, m).mean()) for m in metrics},
        "stores_text": True,
    }
