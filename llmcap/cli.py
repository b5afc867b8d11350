"""llmcap: the thin command line over serving/, loadtest/ and reports/.

Each subcommand parses its arguments and calls one function elsewhere; user
errors come back as one line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from llmcap.errors import UserError
from llmcap.profile import ProfileError, load_profile

REPO = Path(__file__).resolve().parent.parent
EXIT_BAD_INPUT = 2


def _profile(path: str) -> dict:
    try:
        return load_profile(path)
    except ProfileError as e:
        raise UserError(str(e)) from None


# -- serve ------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from serving.launcher import ServerError, UnsupportedVariant, VllmServer, build_command, variant_unsupported
    profile = _profile(args.profile)
    try:
        if args.variant in profile["serving"]["variants"] and variant_unsupported(profile, args.variant):
            raise UnsupportedVariant(f"{args.variant} cannot run on this machine: "
                                     f"{variant_unsupported(profile, args.variant)}")
        if args.dry_run:
            print(" ".join(_quote(a) for a in build_command(profile, args.variant, args.port)))
            return 0
        run_dir = Path(args.run_dir or f"runs/serve-{profile['name']}-{args.variant}")
        server = VllmServer(profile, args.variant, run_dir, port=args.port)
        with server:
            print(f"llmcap: {args.variant} ready at {server.url} (model {server.model_name}); "
                  f"config in {run_dir}/server/config.json; Ctrl-C stops it", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                server.proc.wait()
            except KeyboardInterrupt:
                pass
            if server.proc.poll() is not None and server.proc.returncode not in (0, -signal.SIGTERM):
                print(f"llmcap: vLLM exited with code {server.proc.returncode}", file=sys.stderr)
                return 1
    except UnsupportedVariant as e:
        print(f"llmcap: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServerError as e:
        print(f"llmcap: {e}", file=sys.stderr)
        return 2 if args.dry_run else 1
    return 0


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


# -- tiny-model -------------------------------------------------------------------------------
def engine_python(profile: dict | None) -> str:
    python = (profile or {}).get("serving", {}).get("python") or str(REPO / ".engine" / "venv" / "bin" / "python")
    if not os.path.isfile(python):
        raise UserError(f"{python}: engine Python not found; run scripts/install-cpu-engine.sh first")
    return python


def build_tiny_model(out: Path, profile: dict | None, seed: int = 0) -> dict:
    """Train the tokenizer on the profile's prompts (and the shipped examples) and build the model."""
    from loadtest.datasets import DatasetError, load_prompts
    from loadtest.tasks import TASKS
    texts = []
    sources = [(TASKS[name], None) for name in sorted(TASKS)]
    if profile:
        sources.insert(0, (TASKS[profile["dataset"]["task"]], profile["dataset"]["path"]))
    for task, path in sources:
        try:
            prompts = load_prompts(task, path)
        except DatasetError:
            continue  # a task whose data is not on this machine
        for request in prompts.requests:
            texts.append("\n".join(str(m.get("content") or "") for m in request["messages"])
                         + ("\n" + json.dumps(request["tools"]) if request.get("tools") else ""))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n\x1e\n".join(texts))
        corpus = f.name
    try:
        run = subprocess.run([engine_python(profile), str(REPO / "serving" / "tiny_model_build.py"),
                              "--out", str(out), "--corpus", corpus, "--seed", str(seed)],
                             capture_output=True, text=True)
    finally:
        os.unlink(corpus)
    if run.returncode != 0:
        raise UserError(f"tiny model build failed: {run.stderr.strip().splitlines()[-1] if run.stderr else run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def cmd_tiny_model(args) -> int:
    profile = _profile(args.profile) if args.profile else None
    out = Path(args.dir or (profile["model"]["id"] if profile else ".engine/tiny-qwen3"))
    info = build_tiny_model(out, profile, args.seed)
    print(f"llmcap: tiny model in {out}: {info['parameters']:,} parameters, vocab {info['vocab_size']}, "
          f"median prompt {info['median_corpus_tokens']} tokens (random weights: a CPU stand-in, not a model "
          "to evaluate)")
    return 0


def ensure_tiny_model(profile: dict) -> None:
    model_dir = Path(profile["model"]["id"])
    if profile["model"]["build_tiny"] and not (model_dir / "config.json").exists():
        print(f"llmcap: building the tiny model in {model_dir}", flush=True)
        build_tiny_model(model_dir, profile)


# -- main -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmcap", description="Load testing and capacity planning for "
                                     "self-hosted LLMs on vLLM")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start vLLM for one variant of a profile and wait")
    p.add_argument("profile")
    p.add_argument("--variant", required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--run-dir")
    p.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tiny-model", help="build the tiny random-weight Qwen3 for the CPU engine")
    p.add_argument("dir", nargs="?", help="output directory (default: the profile's model.id)")
    p.add_argument("--profile", help="train the tokenizer on this profile's prompts")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tiny_model)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Subcommands that live beside their code (reports, plan, exporter, inspect)."""
    from llmcap import commands
    return commands.REGISTER


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after -- goes to the load test (`llmcap plan P -- --step-seconds 5`)
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    args.passthrough = passthrough
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"llmcap: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
