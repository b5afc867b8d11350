"""The tiny random-weight Qwen3 that stands in for a real model on the CPU engine.

Its tokenizer is trained on the tasks' prompts so that token counts have a realistic shape;
the build runs in the engine's Python (which has torch and transformers) through
`serving/tiny_model_build.py`. A stand-in: its numbers say nothing about a real model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from llmcap.errors import BadInput, DatasetError, LlmcapError
from llmcap.profile import Profile
from loadtest.datasets import Task, load_prompts
from loadtest.tasks import TASKS

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".engine" / "tiny-qwen3"


def engine_python(profile: Profile | None, python: str | None = None) -> str:
    python = (
        python or (profile.serving.python if profile else None) or str(REPO / ".engine" / "venv" / "bin" / "python")
    )
    if not (os.path.isfile(python) or shutil.which(python)):
        raise BadInput(f"{python}: engine Python not found; run scripts/install-cpu-engine.sh first")
    return python


def build_tiny_model(
    out: Path,
    profile: Profile | None,
    seed: int = 0,
    *,
    shape: str = "tiny",
    fp8_out: Path | None = None,
    python: str | None = None,
) -> dict:
    """Train the tokenizer on the profile's prompts (and the shipped examples) and build the model
    (`shape` tiny, or qwen3-4b: Qwen3-4B's architecture; see serving/tiny_model_build.py)."""
    texts = []
    sources: list[tuple[Task, str | None]] = [(TASKS[name], None) for name in sorted(TASKS)]
    if profile:
        sources.insert(0, (TASKS[profile.dataset.task], profile.dataset.path))
    for task, path in sources:
        try:
            prompts = load_prompts(task, path)
        except DatasetError:
            continue  # a task whose data is not on this machine
        for request in prompts.requests:
            texts.append(
                "\n".join(str(m.get("content") or "") for m in request["messages"])
                + ("\n" + json.dumps(request["tools"]) if request.get("tools") else "")
            )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n\x1e\n".join(texts))
        corpus = f.name
    try:
        run = subprocess.run(
            [
                engine_python(profile, python),
                str(REPO / "serving" / "tiny_model_build.py"),
                "--out",
                str(out),
                "--corpus",
                corpus,
                "--seed",
                str(seed),
                "--shape",
                shape,
                *(["--fp8-out", str(fp8_out)] if fp8_out else []),
            ],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(corpus)
    if run.returncode != 0:
        last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit code {run.returncode}"
        raise LlmcapError(f"tiny model build failed: {last}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def ensure_tiny_model(profile: Profile) -> None:
    model_dir = Path(profile.model.id)
    if profile.model.build_tiny and not (model_dir / "config.json").exists():
        print(f"llmcap: building the tiny model in {model_dir}", flush=True)
        build_tiny_model(model_dir, profile)
