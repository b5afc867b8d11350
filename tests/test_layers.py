"""The import graph has no cycle and no upward or sideways arrow (docs/architecture.md).

base     llmcap.errors, llmcap.profile, llmcap.slo, llmcap.rundir, llmcap.confidence, llmcap.traces  base only
middle   loadtest.*, serving.*, reports.*  (each package a column: never another column)
top      the Locust plugin and locustfiles, llmcap's CLI, plan and commands: anything below
"""

import ast
import sys
from pathlib import Path

from loadtest.tasks import TASKS
from tests.conftest import REPO

PACKAGES = ("llmcap", "loadtest", "serving", "reports")
BASE = {
    "llmcap.errors",
    "llmcap.log",
    "llmcap.profile",
    "llmcap.slo",
    "llmcap.rundir",
    "llmcap.confidence",
    "llmcap.traces",
}
TOP = {
    "llmcap.cli",
    "llmcap.commands",
    "llmcap.plan",
    "llmcap.inspect_cmd",
    "llmcap.accuracy_cmd",
    "llmcap.run_cmd",
    "llmcap.tiny_model",
    "llmcap.__main__",
    "loadtest.machinery",
    "loadtest.plugin",
    "loadtest.controller",
    "loadtest.users",
    "loadtest.shape",
    "loadtest.run_state",
    "loadtest.webui",
    "loadtest.exporter",
} | {f"loadtest.{name}" for name in TASKS}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module of ours this file imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:  # `from loadtest import console` imports a module
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module in TOP:
        return "top"
    return "middle"


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_module_is_placed():
    assert BASE <= set(modules()) and {m for m in TOP if not m.endswith("__main__")} <= set(modules())


def test_no_upward_or_sideways_import():
    wrong = []
    for module, deps in graph().items():
        for dep in deps:
            if dep.split(".")[0] in PACKAGES and "." not in dep:
                continue  # a package's __init__: no code
            mine, theirs = layer(module), layer(dep)
            if mine == "base" and theirs != "base":
                wrong.append(f"{module} (base) imports {dep} ({theirs})")
            elif mine == "middle" and theirs == "top":
                wrong.append(f"{module} imports {dep}, a layer above it")
            elif mine == "middle" and theirs == "middle" and module.split(".")[0] != dep.split(".")[0]:
                wrong.append(
                    f"{module} imports {dep}: {module.split('.')[0]}/ and {dep.split('.')[0]}/ are side by side"
                )
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str):
        state[m] = 1
        path.append(m)
        for dep in sorted(g.get(m, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep) :] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_rule_catches_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a base module that imports a middle one is reported."""
    fake = {"llmcap.profile": tmp_path / "profile.py", "loadtest.stats": tmp_path / "stats.py"}
    fake["llmcap.profile"].write_text("from loadtest.stats import judge\n")
    fake["loadtest.stats"].write_text("x = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: fake)
    try:
        test_no_upward_or_sideways_import()
    except AssertionError as e:
        assert "llmcap.profile (base) imports loadtest.stats (middle)" in str(e)
    else:
        raise AssertionError("a base module importing a middle one was not reported")
