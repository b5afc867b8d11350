"""`llmcap run TASK -H URL ...`: the load test `locust -f loadtest/TASK.py --headless` runs, with
every llmcap option in its --help (Locust prints its --help before it imports a locustfile, so
there llmcap's options never show). The options come from `loadtest/settings.py`, generated from
the profile's settings; the run itself is Locust's, and its exit code is this command's."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from llmcap.errors import ProfileError
from llmcap.plan import locust_command, locustfile_for
from loadtest.settings import add_arguments


def locustfile(task: str) -> Path:
    """A task's locustfile (loadtest/<task>.py), or a locustfile named by its path."""
    if task.endswith(".py"):
        if not Path(task).is_file():
            raise ProfileError(f"{task}: locustfile not found")
        return Path(task)
    return locustfile_for(task)


def load_test_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The llmcap options given, as Locust takes them (each once, in the parser's order)."""
    out: list[str] = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or action.dest in ("host", "help"):
            continue
        flag = max(action.option_strings, key=len)
        out += [flag] if value is True else [flag, str(value)]
    return out


def cmd_run(args) -> int:
    command = [
        *locust_command(),
        "-f",
        str(locustfile(args.task)),
        "--headless",
        "-H",
        args.host,
        *load_test_arguments(args, args.parser),
        *args.passthrough,  # after --: Locust's own options, e.g. --processes 4
    ]
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Locust too: it writes its partial result and exits
        return proc.wait()


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a load test (what `locust -f loadtest/TASK.py --headless` runs), every option listed",
        description="A rate search (or a fixed rate, or a closed loop) against a running server. Options "
        "after -- go to Locust as they are (e.g. -- --processes 4).",
    )
    p.add_argument("task", help="a task (text2sql, banking77, ..., synthetic) or a locustfile's path")
    p.add_argument("-H", "--host", required=True, help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    add_arguments(p)
    p.set_defaults(func=cmd_run, parser=p)
