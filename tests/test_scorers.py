"""The scorers on the reference benchmark's own files (../shared/datasets): every reference answer
scores full marks against itself, an answer made wrong in one place scores as wrong, and a near
miss that only spells the answer differently scores as right."""

import json
import re

import pytest

from loadtest.scorers import normalise_answer, normalise_sql, parse_call, parse_label, score_qa, score_sql
from loadtest.tasks import TASKS, TREC_CLASSES

SHARED = TASKS["smart_home"].default_dataset.parent.parent
DATASETS = {
    "text2sql": SHARED / "text2sql" / "test.jsonl",
    "smart_home": SHARED / "smart_home" / "test.jsonl",
    "git_assistant": SHARED / "git_assistant" / "test.jsonl",
    "docstring": SHARED / "docstring" / "test.jsonl",
    "hotpotqa": SHARED / "hotpotqa" / "test.csv",
    "banking77": SHARED / "banking77" / "distil_8class" / "test.csv",
    "ecommerce": SHARED / "ecommerce" / "test.csv",
    "trec": SHARED / "trec" / "TREC_10.label",
}


def records(task: str) -> list[dict]:
    return TASKS[task].read(DATASETS[task])


def main_score(task: str, output: str, reference: str) -> float:
    score = TASKS[task].score
    assert score is not None
    return next(iter(score(output, reference).values()))


@pytest.mark.parametrize("task", DATASETS)
def test_every_reference_answer_scores_full_marks(task):
    answers = [r["answer"] for r in records(task)]
    assert len(answers) >= 24
    scores = [TASKS[task].score(a, a) for a in answers]  # type: ignore[misc]
    assert all(v == pytest.approx(1.0) for s in scores for v in s.values()), task


# -- text to SQL ------------------------------------------------------------------------------------
def columns_of(schema: str) -> list[str]:
    return re.findall(r"^\s+(\w+) [A-Z]+", schema, flags=re.MULTILINE)


def test_sql_with_a_changed_column_is_wrong_and_a_respelled_one_is_right():
    changed = 0
    for r in records("text2sql"):
        answer = r["answer"]
        # a near miss: keywords in lower case, spaces around every token, doubled semicolon, no final one
        respelled = re.sub(r"\b[A-Z]+\b", lambda m: m.group(0).lower(), answer.rstrip(";"))
        respelled = "  " + re.sub(r"([(),=<>*])", r" \1 ", respelled).replace(" ", "  ") + " ;; \n"
        if "'" not in answer:  # a literal's case is its value: only words outside literals may change
            assert score_sql(respelled, answer)["exact_match"] == 1.0, (respelled, answer)
        used = [c for c in columns_of(r["question"]) if re.search(rf"\b{c}\b", answer)]
        others = [c for c in columns_of(r["question"]) if c not in used and c != "id"]
        if used and others:
            wrong = re.sub(rf"\b{used[-1]}\b", others[0], answer, count=1)
            assert score_sql(wrong, answer)["exact_match"] == 0.0, (wrong, answer)
            changed += 1
    assert changed >= 20


def test_sql_normalisation_keeps_what_changes_the_result():
    assert (
        normalise_sql("select COUNT( * ) from Books where Year<1950;")
        == "select count ( * ) from books where year < 1950"
    )
    # the literal's case is a different value; a quoted identifier is the same column
    assert normalise_sql("SELECT * FROM t WHERE a = 'Sales'") != normalise_sql("SELECT * FROM t WHERE a = 'sales'")
    assert normalise_sql('SELECT "Year" FROM t') == normalise_sql("SELECT year FROM t")
    assert normalise_sql("SELECT a FROM t WHERE b <= 3") != normalise_sql("SELECT a FROM t WHERE b < 3")
    assert score_sql("```sql\nSELECT 1;\n```", "SELECT 1;")["exact_match"] == 1.0
    assert score_sql("<think>count them</think>\nSELECT 1;", "SELECT 1;")["exact_match"] == 1.0


# -- classification ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["banking77", "ecommerce", "trec"])
def test_a_wrong_label_is_wrong_and_a_decorated_one_is_right(task):
    rows = records(task)
    labels = sorted({r["answer"] for r in rows})
    if task == "trec":
        assert set(labels) == set(TREC_CLASSES)
    for r in rows:
        label = r["answer"]
        wrong = next(x for x in labels if x != label)
        assert main_score(task, wrong, label) == 0.0
        for near in (f"  {label.upper()}.\n", f'"{label}"', f"Class: {label}\n\nBecause ...", f"**{label}**"):
            assert main_score(task, near, label) == 1.0, near
    assert parse_label("\n\n`books`.\nthe rest") == "books"


# -- function calling -------------------------------------------------------------------------------
def wrong_argument(arguments: dict) -> dict:
    """The same call with one argument's value changed."""
    key = sorted(arguments)[0]
    value = arguments[key]
    if isinstance(value, bool):
        changed = not value
    elif isinstance(value, int | float):
        changed = value + 1
    elif isinstance(value, list):
        changed = [*value, "extra"]
    else:
        changed = f"{value}x"
    return {**arguments, key: changed}


@pytest.mark.parametrize("task", ["smart_home", "git_assistant"])
def test_a_wrong_argument_is_wrong_and_a_reformatted_call_is_right(task):
    with_arguments = 0
    for r in records(task):
        reference = r["answer"]
        name, arguments = parse_call(reference)  # type: ignore[misc]
        # the form OpenAI's tool calls take: arguments as a JSON string, keys in another order, fenced
        as_tool_call = json.dumps({"arguments": json.dumps(dict(reversed(arguments.items()))), "name": name}, indent=2)
        assert main_score(task, f"```json\n{as_tool_call}\n```", reference) == 1.0
        assert main_score(task, json.dumps({"name": name + "_other", "parameters": arguments}), reference) == 0.0
        if arguments:
            wrong = json.dumps({"name": name, "parameters": wrong_argument(arguments)})
            scores = TASKS[task].score(wrong, reference)  # type: ignore[misc]
            assert scores == {"exact_match": 0.0, "function_name": 1.0}
            with_arguments += 1
    assert with_arguments >= 10
    assert main_score(task, "I would call the function.", reference) == 0.0


# -- question answering -----------------------------------------------------------------------------
def test_hotpotqa_exact_match_and_f1_as_the_official_script():
    rows = records("hotpotqa")
    answers = [r["answer"] for r in rows]
    for answer, other in zip(answers, answers[1:] + answers[:1], strict=True):
        assert score_qa(f"The {answer.upper()}.", answer)["exact_match"] == 1.0
        if normalise_answer(other) != normalise_answer(answer):
            assert score_qa(other, answer)["exact_match"] == 0.0
    # by hand: "the" dropped, 2 of 3 predicted tokens in the 2-token gold: P 2/3, R 1, F1 0.8
    assert score_qa("the Royal Air Force", "Royal Air") == {"exact_match": 0.0, "f1": pytest.approx(0.8)}
    assert score_qa("no", "yes") == {"exact_match": 0.0, "f1": 0.0}


# -- generated text ---------------------------------------------------------------------------------
def test_docstrings_score_by_character_overlap():
    answers = [r["answer"] for r in records("docstring")]
    for answer, other in zip(answers[:40], answers[1:41], strict=True):
        assert main_score("docstring", "  " + answer.replace("\n", "\n  ") + "\n", answer) == pytest.approx(1.0)
        assert main_score("docstring", other, answer) < 0.6
    first = answers[0]
    assert 0.6 < main_score("docstring", first.replace("Args", "Arguments"), first) < 1.0
