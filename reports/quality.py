"""Does a variant keep the answers? Agreement of two quality passes and the accuracy gate.

Read from the run directories' quality passes (loadtest/accuracy.py writes them: each prompt's
answer and scores). The gate is MLPerf Inference's: a variant keeps the answers when its accuracy
is at least `threshold` (99 %) of the baseline's; the interval says whether that would hold on
another draw of the noise.
"""

from __future__ import annotations

import numpy as np

from llmcap.confidence import paired_ratio_interval


def _paired(a: list[dict], b: list[dict]) -> list[tuple[dict, dict]]:
    by_record = {r["record"]: r for r in b}
    return [(r, by_record[r["record"]]) for r in a if r["record"] in by_record]


def _score(row: dict, metric: str) -> float:
    return row["scores"][metric]  # a failed request's are 0 (loadtest/accuracy.py)


def agreement(a: list[dict], b: list[dict], metric: str) -> dict:
    """Over the prompts both passes scored: the share answered identically, and the share scored
    the same (a different answer can be just as right, or just as wrong)."""
    pairs = _paired(a, b)
    if not pairs:
        return {"n": 0, "identical": None, "same_score": None}
    identical = sum(1 for x, y in pairs if x["error"] is None and y["error"] is None and x["answer"] == y["answer"])
    if not all(metric in x["scores"] and metric in y["scores"] for x, y in pairs):
        same = None  # a pass kept only to score others against
    else:
        same = sum(1 for x, y in pairs if abs(_score(x, metric) - _score(y, metric)) < 1e-9) / len(pairs)
    return {"n": len(pairs), "identical": identical / len(pairs), "same_score": same}


def relative_accuracy(variant: list[dict], baseline: list[dict], metric: str, confidence: float = 0.95) -> dict | None:
    """The variant's accuracy as a share of the baseline's on the same prompts, with its interval;
    None when the baseline answered nothing right (no share of zero means anything)."""
    pairs = _paired(variant, baseline)
    v = np.array([_score(x, metric) for x, _ in pairs])
    b = np.array([_score(y, metric) for _, y in pairs])
    found = paired_ratio_interval(v, b, confidence)
    if found is None:
        return None
    relative, low, high = found
    return {"relative": relative, "low": low, "high": high, "confidence": confidence, "n": len(pairs)}


def gate(relative: dict | None, threshold: float) -> dict:
    """pass: accuracy at least `threshold` of the baseline's; `sure`: the interval agrees."""
    if relative is None:
        return {"verdict": "no verdict", "why": "the baseline answered nothing right", "threshold": threshold}
    passed = relative["relative"] >= threshold
    sure = relative["low"] >= threshold if passed else relative["high"] < threshold
    return {"verdict": "pass" if passed else "fail", "sure": sure, "threshold": threshold}
