"""`llmcap inspect PROFILE`: a dataset's token shape before any load test.

Prints the number of prompts and the distribution of prompt and expected-output
length in characters and, where the model's tokenizer can be loaded (by the
engine's Python, which has transformers), in tokens: prompts rendered with the
model's own chat template, tools included, exactly as vLLM will see them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from llmcap.errors import ProfileError
from llmcap.profile import Profile, load_profile
from loadtest.datasets import load_prompts
from loadtest.tasks import TASKS, for_dataset

REPO = Path(__file__).resolve().parent.parent

# runs in the engine's Python: reads requests on stdin, prints token counts
COUNT_TOKENS = r"""
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = {"prompt": [], "expected": []}
data = json.load(sys.stdin)
for req in data["requests"]:
    text = tok.apply_chat_template(req["messages"], tools=req.get("tools"), add_generation_prompt=True,
                                   tokenize=False, enable_thinking=False)
    out["prompt"].append(len(tok(text, add_special_tokens=False)["input_ids"]))
out["expected"] = [len(tok(t)["input_ids"]) for t in data["expected"]]
print(json.dumps(out))
"""


def describe(values: list[float]) -> str:
    if not values:
        return "–"
    a = np.asarray(values, dtype=float)
    return (
        f"mean {a.mean():7.1f}  p50 {np.percentile(a, 50):7.0f}  p95 {np.percentile(a, 95):7.0f}  "
        f"min {a.min():6.0f}  max {a.max():6.0f}"
    )


def _engine_python(profile: Profile) -> str | None:
    candidates = [profile.serving.python, str(REPO / ".engine" / "venv" / "bin" / "python")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def token_counts(profile: Profile, requests: list[dict], expected: list[str]) -> tuple[dict | None, str]:
    python = _engine_python(profile)
    tokenizer = profile.model.tokenizer or profile.model.id
    if python is None:
        return None, "no engine Python with transformers (serving.python): characters only"
    if not (Path(tokenizer) / "tokenizer_config.json").is_file() and not (Path(tokenizer) / "tokenizer.json").is_file():
        return None, f"tokenizer {tokenizer} is not on local disk: characters only"
    run = subprocess.run(
        [python, "-c", COUNT_TOKENS, tokenizer],
        input=json.dumps({"requests": requests, "expected": expected}),
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
        return None, f"tokenizer failed ({last}): characters only"
    return json.loads(run.stdout.strip().splitlines()[-1]), f"tokens by {tokenizer}, chat template applied"


def inspect(profile_path: str, with_tokens: bool = True) -> dict:
    profile = load_profile(profile_path)
    task = TASKS.get(profile.dataset.task)
    if task is None:
        raise ProfileError(
            f"{profile_path}: dataset.task: unknown task {profile.dataset.task!r} (known: {', '.join(TASKS)})"
        )
    task = for_dataset(task, profile.dataset)
    path = Path(profile.dataset.path) if profile.dataset.path else task.default_dataset
    prompts = load_prompts(task, path, seed=profile.search.seed, sample=profile.dataset.sample)
    records = task.read(path)
    expected = [str(r.get(task.expected_field, "")) for r in records] if task.expected_field else []
    prompt_chars = [
        sum(len(m.get("content") or "") for m in r["messages"]) + len(json.dumps(r["tools"]))
        if r.get("tools")
        else sum(len(m.get("content") or "") for m in r["messages"])
        for r in prompts.requests
    ]
    tokens, how = token_counts(profile, prompts.requests, expected) if with_tokens else (None, "not counted")
    return {
        "task": task.name,
        "dataset": str(path),
        "prompts": len(prompts),
        "prompt_chars": prompt_chars,
        "expected_chars": [len(e) for e in expected],
        "tokens": tokens,
        "tokens_how": how,
    }


def cmd_inspect(args) -> int:
    info = inspect(args.profile, not args.no_tokens)
    print(f"{info['task']}: {info['prompts']} prompts from {info['dataset']}")
    print(f"  prompt chars     {describe(info['prompt_chars'])}")
    print(f"  expected chars   {describe(info['expected_chars'])}")
    if info["tokens"]:
        print(f"  prompt tokens    {describe(info['tokens']['prompt'])}")
        print(f"  expected tokens  {describe(info['tokens']['expected'])}")
    print(f"  ({info['tokens_how']})")
    if args.json:
        Path(args.json).write_text(json.dumps(info))
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="a profile's dataset: prompt count and length distribution")
    p.add_argument("profile", help="profile YAML whose dataset to inspect")
    p.add_argument("--no-tokens", action="store_true", help="characters only (do not load the tokenizer)")
    p.add_argument("--json", help="also write the numbers to this file")
    p.set_defaults(func=cmd_inspect)
