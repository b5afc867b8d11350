"""How right an answer is: one scorer per kind of task, pure functions of (output, reference).

Each returns its metrics as a dict, the task's main figure first, each in [0, 1]. The output is the
model's text; for a tool-calling task it is the call written as {"name": ..., "parameters": ...}
(or "arguments"), the form the datasets' reference answers take. A model that thinks aloud first
is judged on what follows its `</think>`.
"""

from __future__ import annotations

import collections
import json
import re
import string

# -- text to SQL ------------------------------------------------------------------------------------
# a string literal ('' escapes a quote), a quoted identifier, a word or number, a two-character
# operator, or any other single character
_SQL_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\w+(?:\.\w+)*|<=|>=|<>|!=|==|\|\||\S""")


def normalise_sql(sql: str) -> str:
    """One spelling per query: tokens joined by single spaces, everything outside string literals
    in lower case (SQLite's keywords and identifiers ignore case; a literal's case is its value),
    trailing semicolons dropped. Quoted identifiers lose their quotes."""
    tokens = []
    for token in _SQL_TOKEN.findall(_after_thinking(sql).strip().rstrip(";").strip()):
        if token.startswith("'"):
            tokens.append(token)
        elif token[0] in '"`':
            tokens.append(token[1:-1].replace('""', '"').lower())
        else:
            tokens.append(token.lower())
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return " ".join(tokens)


def score_sql(output: str, reference: str) -> dict[str, float]:
    """Exact match after normalise_sql. (Execution match needs rows to run on; the datasets carry
    only schemas, and on empty tables every query returns nothing, so it is not offered.)"""
    return {"exact_match": float(normalise_sql(_strip_fence(output)) == normalise_sql(reference))}


# -- classification ---------------------------------------------------------------------------------
def parse_label(output: str) -> str:
    """The class name from an answer asked to be "exactly one class name and nothing else": its
    first non-empty line, without quotes, markup or a final full stop, in lower case."""
    lines = [line.strip() for line in _after_thinking(output).splitlines() if line.strip()]
    label = lines[0] if lines else ""
    label = re.sub(r"^(?:class|label|answer|intent|category)\s*:\s*", "", label, flags=re.IGNORECASE)
    return label.strip(" \t\"'`*.").lower()


def score_label(output: str, reference: str) -> dict[str, float]:
    return {"accuracy": float(parse_label(output) == reference.strip().lower())}


# -- function calling -------------------------------------------------------------------------------
def parse_call(text: str) -> tuple[str, dict] | None:
    """(name, arguments) of the one call written as JSON, or None if it is not one. Arguments may
    be an object or, as OpenAI's tool calls carry them, a JSON string of one."""
    text = _strip_fence(_after_thinking(text)).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        call = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = call.get("parameters", call.get("arguments", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    return (call["name"], arguments) if isinstance(arguments, dict) else None


def score_call(output: str, reference: str) -> dict[str, float]:
    """The right function with exactly the right arguments (compared as parsed JSON), and the
    right function alone."""
    got, want = parse_call(output), parse_call(reference)
    if want is None:
        raise ValueError(f"reference answer is not a function call: {reference[:80]!r}")
    name_ok = got is not None and got[0] == want[0]
    return {"exact_match": float(name_ok and got is not None and got[1] == want[1]), "function_name": float(name_ok)}


# -- open question answering (HotpotQA's official evaluation) ---------------------------------------
def normalise_answer(text: str) -> str:
    """SQuAD/HotpotQA's normalize_answer: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def score_qa(output: str, reference: str) -> dict[str, float]:
    """Exact match and token F1 as hotpot_evaluate_v1.py computes them (yes/no/noanswer must match
    exactly to earn any F1)."""
    prediction, gold = normalise_answer(_after_thinking(output)), normalise_answer(reference)
    exact = float(prediction == gold)
    if (prediction in ("yes", "no", "noanswer") or gold in ("yes", "no", "noanswer")) and prediction != gold:
        return {"exact_match": exact, "f1": 0.0}
    common = collections.Counter(prediction.split()) & collections.Counter(gold.split())
    same = sum(common.values())
    if same == 0:
        return {"exact_match": exact, "f1": 0.0}
    precision, recall = same / len(prediction.split()), same / len(gold.split())
    return {"exact_match": exact, "f1": 2 * precision * recall / (precision + recall)}


# -- generated text ---------------------------------------------------------------------------------
CHRF = "chrf"  # score_text's metric


def score_text(output: str, reference: str) -> dict[str, float]:
    """chrF (Popović 2015, as sacrebleu computes it), the character n-gram F-score that
    machine-translation and generation benchmarks report; 1.0 for the reference itself."""
    from sacrebleu.metrics import CHRF as ChrF  # imported here: only text tasks need it

    # the reference too: against another run's answers, both may think aloud first
    reference = _after_thinking(reference).strip()
    return {CHRF: ChrF().sentence_score(_after_thinking(output).strip(), [reference]).score / 100.0}


def _after_thinking(text: str) -> str:
    return text.split("</think>")[-1]


def _strip_fence(text: str) -> str:
    """The inside of a Markdown code fence, if the answer is one."""
    match = re.search(r"```[\w-]*\n?(.*?)```", text, flags=re.DOTALL)
    return match.group(1) if match else text
