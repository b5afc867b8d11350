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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from llmcap.confidence import bootstrap_mean_interval
from llmcap.profile import AccuracySettings
from loadtest.datasets import DatasetError, Task
from loadtest.dialect import takes_tool_choice


def scored_records(task: Task, dataset: Path, sample: int | None, seed: int = 0) -> list[tuple[int, dict, str]]:
    """(record number, request fields, reference answer) of every record the pass scores."""
    if task.score is None or task.expected_field is None:
        raise DatasetError(f"task {task.name}: has no scorer or reference answers")
    records = task.read(dataset)
    numbered = list(enumerate(records, 1))
    if sample is not None and sample < len(numbered):
        numbered = sorted(random.Random(seed).sample(numbered, sample), key=lambda nr: nr[0])
    out = []
    for number, record in numbered:
        reference = record.get(task.expected_field)
        if reference is None:
            raise DatasetError(f"{dataset}: record {number}: no '{task.expected_field}' to score against")
        out.append((number, task.build(record, dataset), str(reference)))
    return out


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
) -> tuple[list[dict], dict]:
    """Send every scored record once; return (one row per record, the summary)."""
    items = scored_records(task, dataset, settings.sample)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def one(item: tuple[int, dict, str]) -> dict:
        number, request, reference = item
        # no model named: the server's only one (vLLM answers to its served name, a proxy to its default)
        body = {**({"model": model} if model else {}), **request}
        body.update(max_tokens=settings.max_tokens, temperature=0.0, stream=False)
        if not takes_tool_choice(engine):
            body.pop("tool_choice", None)
        started = time.monotonic()
        row: dict = {"record": number, "reference": reference, "answer": None, "error": None}
        try:
            req = urllib.request.Request(
                f"{url.rstrip('/')}/v1/chat/completions", json.dumps(body).encode(), headers, method="POST"
            )
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                row["answer"] = answer_text(json.loads(resp.read()))
        except urllib.error.HTTPError as e:
            row["error"] = f"HTTP {e.code}: {e.read()[:200].decode(errors='replace')}"
        except (OSError, ValueError) as e:
            row["error"] = f"{type(e).__name__}: {e}"
        row["latency_s"] = time.monotonic() - started
        assert task.score is not None
        # a failed request is a wrong answer: the gate must not pass a variant that cannot answer
        row["scores"] = task.score(row["answer"] or "", reference) if row["error"] is None else None
        return row

    with ThreadPoolExecutor(max(1, settings.concurrency)) as pool:
        rows = list(pool.map(one, items))
    return rows, summarize(rows, task)


def main_scores(rows: list[dict], metric: str) -> np.ndarray:
    return np.array([r["scores"][metric] if r.get("scores") else 0.0 for r in rows])


def summarize(rows: list[dict], task: Task) -> dict:
    assert task.score is not None
    metrics = list(task.score("", rows[0]["reference"]).keys()) if rows else []
    main = metrics[0] if metrics else "accuracy"
    values = main_scores(rows, main)
    low, high = bootstrap_mean_interval(values)
    return {
        "task": task.name,
        "n": len(rows),
        "errors": sum(1 for r in rows if r.get("error")),
        "metric": main,
        "accuracy": float(values.mean()) if len(values) else None,
        "interval": {"low": low, "high": high, "confidence": 0.95},
        "metrics": {m: float(main_scores(rows, m).mean()) for m in metrics} if rows else {},
        "stores_text": True,
    }
