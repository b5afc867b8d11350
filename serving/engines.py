"""What each serving engine runs, which model name it answers to, and how it says it is ready.

    vllm          `vllm serve` (or vLLM's OpenAI API server module, with serving.python)
    transformers  `transformers serve --continuous-batching`: a second engine to compare with vLLM,
                  and the one a GPU machine without vLLM can run
    external      a server someone else started (serving.url): nothing is launched or stopped

The command is built from the profile alone, so a dry run shows exactly what would start.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.request
from pathlib import Path

from llmcap.errors import ProfileError
from llmcap.profile import Profile, Variant

# every per-variant setting but these is a vLLM flag of the same name
VARIANT_FLAGS = tuple(f.name for f in dataclasses.fields(Variant) if f.name not in ("model", "extra_args"))

# `transformers serve` has no flag for these; its own flags go in extra_args
TRANSFORMERS_FLAGS = ("dtype",)

# the interpreter line that runs the `transformers` CLI where its console script is missing or broken
TRANSFORMERS_MAIN = "from transformers.cli.transformers import main; main()"


class UnknownVariant(ProfileError):
    pass


def effective_args(profile: Profile, variant: str) -> dict:
    """Common serving args with the variant's on top."""
    serving = profile.serving
    if variant not in serving.variants:
        raise UnknownVariant(
            f"{profile.file}: serving.variants: no variant {variant!r} (have: {', '.join(serving.variants)})"
        )
    v = serving.variants[variant]
    args = {k: getattr(serving, k, None) for k in VARIANT_FLAGS}  # dtype and the like are per variant only
    args.update({k: getattr(v, k) for k in VARIANT_FLAGS if getattr(v, k) is not None})
    args["extra_args"] = list(serving.extra_args) + list(v.extra_args)
    return args


def model_path(profile: Profile, variant: str) -> str:
    """The checkpoint a variant serves: its own (a pre-quantized one, say) or the profile's."""
    effective_args(profile, variant)  # an unknown variant fails here
    return profile.serving.variants[variant].model or profile.model.id


def served_model_name(profile: Profile, variant: str) -> str | None:
    """The `model` every request names; None: whatever the server's /v1/models lists."""
    engine = profile.serving.engine
    if engine == "transformers":
        return model_path(profile, variant)  # it answers only to the exact id it was started with
    if engine == "external":
        return profile.model.served_name
    return profile.model.served_name or Path(model_path(profile, variant)).name


def build_command(profile: Profile, variant: str, port: int | None = None) -> list[str] | None:
    """The exact command line for one variant; None for an external server (nothing to start)."""
    engine = profile.serving.engine
    if engine == "external":
        return None
    if engine == "transformers":
        return _transformers_command(profile, variant, port)
    return _vllm_command(profile, variant, port)


def _vllm_command(profile: Profile, variant: str, port: int | None) -> list[str]:
    """Prefers the `vllm serve` console script; with `serving.python` set (an engine venv, as for the
    CPU build whose console script is broken) it runs the OpenAI API server module with that interpreter."""
    serving = profile.serving
    args = effective_args(profile, variant)
    model = model_path(profile, variant)
    if serving.python:
        cmd = [serving.python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    else:
        cmd = ["vllm", "serve", model]
    cmd += [
        "--served-model-name",
        served_model_name(profile, variant) or Path(model).name,
        "--host",
        serving.host,
        "--port",
        str(port or serving.port),
    ]
    if profile.model.tokenizer:
        cmd += ["--tokenizer", profile.model.tokenizer]
    for key in VARIANT_FLAGS:
        flag, value = "--" + key.replace("_", "-"), args[key]
        if isinstance(value, bool):  # vLLM's switches: --flag / --no-flag
            cmd.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            cmd += [flag, str(value)]
    cmd += [str(a) for a in args["extra_args"]]
    return cmd


def _transformers_command(profile: Profile, variant: str, port: int | None) -> list[str]:
    serving = profile.serving
    args = effective_args(profile, variant)
    for key in VARIANT_FLAGS:
        if key not in TRANSFORMERS_FLAGS and args[key] is not None:
            where = f"serving.variants.{variant}" if getattr(serving.variants[variant], key) is not None else "serving"
            raise ProfileError(
                f"{profile.file}: {where}.{key}: not a setting of the transformers engine "
                "(put `transformers serve` flags in extra_args)"
            )
    if serving.python:
        cmd = [serving.python, "-c", TRANSFORMERS_MAIN, "serve"]
    else:
        cmd = ["transformers", "serve"]
    cmd += [
        "--continuous-batching",  # its default serves one request at a time: not a server to size
        "--host",
        serving.host,
        "--port",
        str(port or serving.port),
        "--device",
        "cpu" if serving.device == "cpu" else "cuda",
        "--dtype",
        args["dtype"] or "auto",
        "--log-level",
        "info",
    ]
    cmd += [str(a) for a in args["extra_args"]]
    cmd.append(model_path(profile, variant))  # the model it loads at start and pins every request to
    return cmd


def is_ready(profile: Profile, url: str, model_name: str | None) -> bool:
    """Healthy and serving the model. vLLM lists it in /v1/models; `transformers serve` has loaded its
    pinned model before it answers /health (its /v1/models lists the local hub cache instead)."""
    urllib.request.urlopen(url + "/health", timeout=2).read()
    if profile.serving.engine == "transformers" or model_name is None:
        return True
    models = json.loads(urllib.request.urlopen(url + "/v1/models", timeout=5).read())
    return any(m.get("id") == model_name for m in models.get("data", []))


def transformers_version(python: str | None) -> str | None:
    """The version the server's interpreter imports (its log does not say)."""
    try:
        out = subprocess.run(
            [python or "python3", "-c", "import transformers; print(transformers.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def warm_up(profile: Profile, url: str, model_name: str | None, timeout_s: float) -> None:
    """`transformers serve` sets up its continuous-batching worker on the first request (24 s for
    the tiny model on CPU): send that one before the load test, so its first step measures the server,
    not its start. vLLM warms itself up before it reports healthy."""
    if profile.serving.engine != "transformers":
        return
    body = {
        "model": model_name,
        "messages": [{"role": "user", "content": "warm up"}],
        "max_tokens": 2,
        "stream": False,
        "temperature": 0,
    }
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=timeout_s).read()
