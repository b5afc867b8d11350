"""llmcap: the thin command line over serving/, loadtest/ and reports/.

Each subcommand parses its arguments and calls one function elsewhere; user
errors come back as one line and exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib.metadata import version
from pathlib import Path

from llmcap.errors import ExitCode, LlmcapError, ProfileError
from llmcap.log import get_logger
from llmcap.profile import load_profile

log = get_logger()


# -- serve ------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from serving.launcher import Server, checked_command

    profile = load_profile(args.profile)
    command = checked_command(profile, args.variant, args.port)
    if command is None:
        raise ProfileError(
            f"{profile.file}: serving.engine: external: the server at {profile.serving.url} runs already"
        )
    if args.dry_run:
        print(" ".join(_quote(a) for a in command))
        return ExitCode.OK
    run_dir = Path(args.run_dir or f"runs/serve-{profile.name}-{args.variant}")
    server = Server(profile, args.variant, run_dir, port=args.port)
    with server:
        assert server.proc is not None  # started
        print(
            f"llmcap: {args.variant} ready at {server.url} (model {server.model_name}); "
            f"config in {run_dir}/server/config.json; Ctrl-C stops it",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass
        if server.proc.poll() is not None and server.proc.returncode not in (0, -signal.SIGTERM):
            log.error(f"{profile.serving.engine} exited with code {server.proc.returncode}")
            return ExitCode.FAILED
    return ExitCode.OK


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# -- tiny-model -------------------------------------------------------------------------------
def cmd_tiny_model(args) -> int:
    from llmcap.tiny_model import DEFAULT_DIR, build_tiny_model

    profile = load_profile(args.profile) if args.profile else None
    out = Path(args.dir or (profile.model.id if profile else DEFAULT_DIR))
    fp8_out = Path(args.fp8_out) if args.fp8_out else None
    info = build_tiny_model(out, profile, args.seed, shape=args.shape, fp8_out=fp8_out, python=args.python)
    print(
        f"llmcap: {args.shape} model in {out}: {info['parameters']:,} parameters, vocab {info['vocab_size']}, "
        f"median prompt {info['median_corpus_tokens']} tokens (random weights: a stand-in, not a model "
        "to evaluate)" + (f"; FP8 copy in {fp8_out}" if fp8_out else "")
    )
    return 0


# -- main -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmcap", description="Load testing and capacity planning for self-hosted LLMs on vLLM"
    )
    parser.add_argument("--version", action="version", version=f"llmcap {version('llmcap')}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start vLLM for one variant of a profile and wait")
    p.add_argument("profile", help="profile YAML (model, serving and its variants)")
    p.add_argument("--variant", required=True, help="which of serving.variants to serve")
    p.add_argument("--port", type=int, help="port to listen on (default serving.port)")
    p.add_argument("--run-dir", help="where the server's log and config go (default runs/serve-<profile>-<variant>)")
    p.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tiny-model", help="build the tiny random-weight Qwen3 for the CPU engine")
    p.add_argument("dir", nargs="?", help="output directory (default: the profile's model.id)")
    p.add_argument("--profile", help="train the tokenizer on this profile's prompts")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--shape", choices=("tiny", "qwen3-4b"), default="tiny", help="qwen3-4b: Qwen3-4B's architecture")
    p.add_argument("--fp8-out", help="also write a copy with FP8 weights here (needs a GPU)")
    p.add_argument("--python", help="the Python that has torch and transformers (default: the engine venv's)")
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
        argv, passthrough = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    args.passthrough = passthrough
    try:
        return int(args.func(args) or 0)
    except LlmcapError as e:
        # our own errors: the first line says it all (a server's log tail follows it where there is one)
        log.error(str(e))
        return int(e.exit_code)


if __name__ == "__main__":
    sys.exit(main())
