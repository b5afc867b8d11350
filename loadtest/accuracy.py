"""The quality pass: every dataset prompt once, at temperature 0, each answer scored against the
dataset's own reference (the task's scorer, loadtest/scorers.py). Prompts that carry no reference
(the chat task's files) are scored against another pass's answers, the baseline's, by chrF: how far
a variant's answers moved from the baseline's. What two passes share and whether a variant keeps the
baseline's accuracy are the reports' business (reports/quality.py).

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
from loadtest.datasets import DatasetError, Task, without_reply
from loadtest.dialect import takes_tool_choice, template_fields
from loadtest.scorers import CHRF, score_text
from loadtest.server_api import fetch_json

Reference = str | None  # None: the answer is kept, not scored (a first pass with nothing to compare with)


def reference_free(task: Task) -> bool:
    """Prompts without reference answers: scored against the baseline's answers instead."""
    return task.expected_field is None and not task.generated


def scorer(task: Task):
    return score_text if reference_free(task) else task.score


def scored_records(
    task: Task, dataset: Path, sample: int | None, seed: int = 0, against: dict[int, str] | None = None
) -> list[tuple[int, dict, Reference]]:
    """(record number, request fields, reference answer) of every record the pass scores. A record
    that cannot be sent or scored (its reference not the kind of answer the scorer reads) fails
    here, by number, before any request. Prompts without references take theirs from `against`
    (record number: the baseline's answer; a record it failed is left out), or none."""
    if reference_free(task):
        numbered = [
            (n, task.build(without_reply(record), dataset)) for n, record in _numbered(task, dataset, sample, seed)
        ]
        if against is None:
            return [(number, request, None) for number, request in numbered]
        return [(number, request, against[number]) for number, request in numbered if number in against]
    if task.score is None or task.expected_field is None:
        raise DatasetError(
            f"task {task.name}: has no scorer or reference answers (set accuracy.enabled: false in the profile)"
        )
    out: list[tuple[int, dict, Reference]] = []
    for number, record in _numbered(task, dataset, sample, seed):
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


def _numbered(task: Task, dataset: Path, sample: int | None, seed: int) -> list[tuple[int, dict]]:
    """The dataset's records by number (from 1), a seeded sample of them where asked."""
    try:
        records = task.read(dataset)
    except OSError as e:
        raise DatasetError(f"{dataset}: cannot read the dataset ({e.strerror or e})") from None
    numbered = list(enumerate(records, 1))
    if sample is not None and sample < len(numbered):
        numbered = sorted(random.Random(seed).sample(numbered, sample), key=lambda nr: nr[0])
    return numbered


def metric_names(task: Task, reference: str) -> list[str]:
    """The task's metrics, main first: what its scorer returns for the reference itself."""
    score = scorer(task)
    assert score is not None
    return list(score(reference, reference))


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
    against: dict[int, str] | None = None,
) -> tuple[list[dict], dict]:
    """Send every scored record once; return (one row per record, the summary). `against`: the
    answers that prompts without references are scored against (scored_records)."""
    items = scored_records(task, dataset, settings.sample, against=against)
    score = scorer(task)
    assert score is not None

    def one(item: tuple[int, dict, Reference]) -> dict:
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
        if reference is None:
            row["scores"] = {}  # kept for a later pass to be scored against
        elif row["error"] is None:
            row["scores"] = score(row["answer"] or "", reference)
        else:  # a wrong answer, in every reader: the gate must not pass a variant that cannot answer
            row["scores"] = dict.fromkeys(metric_names(task, reference), 0.0)
        return row

    with ThreadPoolExecutor(max(1, settings.concurrency)) as pool:
        rows = list(pool.map(one, items))
    return rows, summarize(rows, task, against is not None)


def main_scores(rows: list[dict], metric: str) -> np.ndarray:
    return np.array([r["scores"][metric] for r in rows])


def summarize(rows: list[dict], task: Task, scored_against_answers: bool = False) -> dict:
    """`references`: what the answers were scored against: "dataset" (its reference answers),
    "baseline" (another pass's answers) or None (not scored: kept to score others against)."""
    references = "dataset" if not reference_free(task) else "baseline" if scored_against_answers else None
    metrics = metric_names(task, rows[0]["reference"]) if rows and references else []
    main = metrics[0] if metrics else CHRF if reference_free(task) else "accuracy"
    values = main_scores(rows, main) if metrics else np.array([])
    return {
        "task": task.name,
        "n": len(rows),
        "errors": sum(1 for r in rows if r.get("error")),
        "references": references,
        "metric": main,
        "accuracy": float(values.mean()) if len(values) else None,
        "interval": share_interval(values) if len(values) else None,
        "metrics": {m: float(main_scores(rows, m).mean()) for m in metrics},
        "stores_text": True,
    }
