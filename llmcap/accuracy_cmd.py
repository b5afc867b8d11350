"""`llmcap accuracy PROFILE --variant V`: serve one variant, score its answers, stop.

`llmcap plan` runs the same pass (`score_answers`) for every variant before its rate search,
twice for the baseline: two passes of one server show how far temperature 0 is from repeatable.
Prompts without reference answers are scored against the baseline's first pass (`--baseline`).
"""

from __future__ import annotations

import os
from pathlib import Path

from llmcap.confidence import interval_label
from llmcap.errors import BadInput, ExitCode
from llmcap.log import get_logger
from llmcap.profile import Profile, load_profile
from llmcap.rundir import accuracy_paths, read_accuracy, write_accuracy
from loadtest.accuracy import reference_free, run_pass, scored_records
from loadtest.datasets import Task
from loadtest.tasks import TASKS, for_dataset

log = get_logger()


def _task_and_dataset(profile: Profile) -> tuple[Task, Path]:
    task = for_dataset(TASKS[profile.dataset.task], profile.dataset)
    return task, Path(profile.dataset.path) if profile.dataset.path else task.default_dataset


def check_answers(profile: Profile) -> None:
    """Every record the pass will score can be sent and scored: a bad one fails here (exit 2),
    before a server starts."""
    task, dataset = _task_and_dataset(profile)
    scored_records(task, dataset, profile.accuracy.sample)


def baseline_answers(run_dir: Path | None) -> dict[int, str] | None:
    """A run's first quality pass's answers by record, the failed ones left out; None without one
    (or where every request of it failed)."""
    found = read_accuracy(run_dir) if run_dir is not None else None
    if found is None:
        return None
    return {row["record"]: row["answer"] for row in found[0] if row["error"] is None} or None


def score_answers(
    profile: Profile, url: str, model: str | None, run_dir: Path, number: int = 1, baseline: Path | None = None
) -> dict:
    """One quality pass against a running server, written to the run directory; its summary.
    Prompts without references are scored against `baseline`'s answers (a run directory), if any."""
    task, dataset = _task_and_dataset(profile)
    against = baseline_answers(baseline) if reference_free(task) else None
    if reference_free(task) and baseline is not None and against is None:
        log.warning(f"{baseline}: no answers of the baseline to score against: these are kept, not scored")
    api_key = os.environ.get(profile.request.api_key_env) if profile.request.api_key_env else None
    rows, summary = run_pass(
        url,
        model,
        task,
        dataset,
        profile.accuracy,
        profile.serving.engine,
        profile.request.timeout_s,
        api_key,
        profile.request.chat_template_kwargs,
        against,
    )
    summary["threshold"] = profile.accuracy.threshold  # the gate's, read back by the comparison
    if against is not None and baseline is not None:  # relative: the link holds where the plan is copied
        summary["against"] = os.path.relpath(baseline.resolve(), run_dir.resolve())
    write_accuracy(run_dir, rows, summary, number)
    return summary


def describe(summary: dict) -> str:
    """ "exact_match 42.0 % (21 of 50 prompts; 28.1-56.8 %, exact interval, covers at least 95 %)" and the failures."""
    n, interval = summary["n"], summary["interval"]
    failed = f", {summary['errors']} requests failed" if summary["errors"] else ""
    if summary.get("references") is None:  # reference-free, nothing yet to score against
        failed = f" ({summary['errors']} failed: left out)" if summary["errors"] else ""
        return f"{n} prompts answered{failed}, kept to score the other variants' answers against (no reference answers)"
    if summary["accuracy"] is None:
        return f"no prompts to score{failed}"
    if summary["references"] == "baseline":
        return (
            f"{summary['metric']} {_percent(summary['accuracy'])} against the baseline's answers ({n} prompts; "
            f"{_percent(interval['low'])}-{_percent(interval['high'])}, {interval_label(interval)}){failed}"
        )
    right = round(summary["accuracy"] * n)
    text = (
        f"{summary['metric']} {_percent(summary['accuracy'])} ({right} of {n} prompts; "
        f"{_percent(interval['low'])}-{_percent(interval['high'])}, {interval_label(interval)})"
    )
    return text + (f", {summary['errors']} requests failed (scored as wrong)" if summary["errors"] else "")


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def cmd_accuracy(args) -> int:
    from serving.launcher import Server, checked_command

    profile = load_profile(args.profile)
    checked_command(profile, args.variant, None)
    check_answers(profile)
    baseline = Path(args.baseline) if args.baseline else None
    if baseline is not None and read_accuracy(baseline) is None:
        raise BadInput(f"--baseline {baseline}: no quality pass there (accuracy/answers.jsonl and summary.json)")
    if baseline is not None and baseline_answers(baseline) is None:
        raise BadInput(f"--baseline {baseline}: every request of its quality pass failed: nothing to score against")
    run_dir = Path(args.run_dir or f"runs/accuracy-{profile.name}-{args.variant}")
    with Server(profile, args.variant, run_dir) as server:
        summary = score_answers(profile, server.url, server.model_name, run_dir, baseline=baseline)
    answers, _ = accuracy_paths(run_dir)
    print(f"llmcap: {args.variant}: {profile.dataset.task} {describe(summary)}; answers in {answers}", flush=True)
    if summary["errors"] == summary["n"]:
        log.error(f"{args.variant}: every request failed")
        return ExitCode.FAILED
    return ExitCode.OK


def register(sub) -> None:
    p = sub.add_parser("accuracy", help="score one variant's answers against the dataset's references")
    p.add_argument("profile", help="profile YAML (its dataset, model and serving.variants)")
    p.add_argument("--variant", required=True, help="the variant of serving.variants to serve and score")
    p.add_argument("--run-dir", help="where the answers go (default runs/accuracy-<profile>-<variant>)")
    p.add_argument(
        "--baseline",
        metavar="RUN_DIR",
        help="prompts without reference answers (task chat): score these answers against that run's, by chrF",
    )
    p.set_defaults(func=cmd_accuracy)
