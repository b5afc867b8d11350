"""Profiles: one YAML file says what to serve, how to load it, and what 'good enough' is.

The schema below is the single source of truth for fields, types and defaults;
`docs/profiles.md` explains each. Loading rejects unknown keys, wrong types and
missing files with one `ProfileError` line naming the file and the field path.
Relative paths in a profile are relative to the profile file.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml


class ProfileError(ValueError):
    pass


NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
ANY_MAP = dict

# field -> (allowed types, default); a nested dict is a section
VARIANT = {
    "dtype": (OPT_STR, None),
    "quantization": (OPT_STR, None),
    "kv_cache_dtype": (OPT_STR, None),
    "max_model_len": ((int, type(None)), None),
    "gpu_memory_utilization": (OPT_NUM, None),
    "max_num_seqs": ((int, type(None)), None),
    "extra_args": (list, []),
}

SCHEMA = {
    "name": (str, None),
    "description": (str, ""),
    "dataset": {
        "task": (str, "text2sql"),
        "path": (OPT_STR, None),
        "sample": ((int, type(None)), None),
    },
    "model": {
        "id": (str, None),
        "served_name": (OPT_STR, None),
        "tokenizer": (OPT_STR, None),
        "build_tiny": (bool, False),  # `llmcap tiny-model` builds it when missing (CPU demo)
    },
    "serving": {
        "engine": (str, "vllm"),
        "device": (str, "gpu"),  # gpu, or cpu: vLLM's CPU build (its limits are checked before start)
        "python": (OPT_STR, None),  # the engine's own interpreter; None: the `vllm` console script
        "host": (str, "127.0.0.1"),
        "port": (int, 8000),
        "max_model_len": ((int, type(None)), None),
        "gpu_memory_utilization": (OPT_NUM, None),
        "max_num_seqs": ((int, type(None)), None),
        "extra_args": (list, []),
        "env": (dict, {}),
        "nice": (int, 0),  # lower the server's CPU priority (client and server sharing cores)
        "startup_timeout_s": (NUM, 900),
        "variants": (dict, {}),  # name -> VARIANT
    },
    "request": {
        "max_tokens": (int, 64),
        "min_tokens": ((int, type(None)), None),
        "temperature": (NUM, 0.0),
        "ignore_eos": (bool, False),
        "stream": (bool, True),
        "timeout_s": (NUM, 60.0),
        "api_key_env": (OPT_STR, None),
        "tool_choice": (OPT_STR, None),  # overrides the task's (function-calling tasks send "required")
    },
    "slo": {
        "p95_ms": (NUM, 1000.0),
        "p99_ms": (OPT_NUM, None),
        "ttft_p95_ms": (OPT_NUM, None),
        "max_error_rate": (NUM, 0.01),
    },
    "search": {
        "start_rps": (NUM, 1.0),
        "growth": (NUM, 2.0),
        "precision": (NUM, 0.03),
        "step_seconds": (NUM, 20.0),
        "warmup_seconds": (NUM, 5.0),
        "confirm_seconds": (NUM, 40.0),
        "max_rps": (OPT_NUM, None),
        "min_rps": (OPT_NUM, None),  # floor of the descent when start_rps fails; None: start_rps / 16
        "min_requests": (int, 20),  # a step's window holds at least this many arrivals
        "max_lateness_ms": (NUM, 50.0),
        "arrival": (str, "poisson"),
        "seed": (int, 0),
        "max_concurrency": (int, 1024),
    },
    "cost": {
        "gpu": (str, "H100-SXM"),
        "gpus_per_replica": (int, 1),
        "usd_per_gpu_hour": (NUM, 2.40),
        "utilizations": (list, [1.0, 0.5, 0.1]),
        "hosted_prices": (OPT_STR, None),  # a price table; None: profiles/hosted_prices.yaml
    },
}
REQUIRED = {"name", "model.id"}
TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
              dict: "mapping", type(None): "null"}


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(dict.fromkeys(TYPE_NAMES[t] for t in types))


def _check(where: str, value, types, path: str):
    types = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python; a YAML `true` is not a port number
    if isinstance(value, bool) and bool not in types:
        raise ProfileError(f"{where}: {path}: expected {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ProfileError(f"{where}: {path}: expected {_type_name(types)}, got {type(value).__name__} {value!r}")
    return float(value) if float in types and int in types and isinstance(value, int) and value is not None else value


def _apply(where: str, schema: dict, data, path: str) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: {path or 'top level'}: expected a mapping")
    for key in data:
        if key not in schema:
            raise ProfileError(f"{where}: {path + '.' if path else ''}{key}: unknown key "
                               f"(expected one of: {', '.join(schema)})")
    out = {}
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _apply(where, spec, data.get(key), sub)
        elif key in data:
            out[key] = _check(where, data[key], spec[0], sub)
        else:
            out[key] = copy.deepcopy(spec[1])
    return out


def load_profile(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: profile not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark else ""
        raise ProfileError(f"{path}{at}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    profile = _apply(str(path), SCHEMA, raw, "")
    for dotted in sorted(REQUIRED):
        section, _, key = dotted.rpartition(".")
        holder = profile[section] if section else profile
        if holder.get(key) in (None, ""):
            raise ProfileError(f"{path}: {dotted}: required")
    variants = {}
    for name, body in profile["serving"]["variants"].items():
        variants[str(name)] = _apply(str(path), VARIANT, body, f"serving.variants.{name}")
    profile["serving"]["variants"] = variants
    if not variants:
        raise ProfileError(f"{path}: serving.variants: at least one variant is required")
    if profile["serving"]["device"] not in ("gpu", "cpu"):
        raise ProfileError(f"{path}: serving.device: expected gpu or cpu, got {profile['serving']['device']!r}")
    if profile["search"]["arrival"] not in ("poisson", "poisson-iid", "constant"):
        raise ProfileError(f"{path}: search.arrival: expected poisson, poisson-iid or constant")
    for i, u in enumerate(profile["cost"]["utilizations"]):
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
            raise ProfileError(f"{path}: cost.utilizations[{i}]: expected a number in (0, 1], got {u!r}")
    base = path.resolve().parent
    profile["_file"] = str(path)
    profile["_dir"] = str(base)
    if profile["dataset"]["path"]:
        ds = (base / profile["dataset"]["path"]).resolve()
        if not ds.is_file():
            raise ProfileError(f"{path}: dataset.path: file not found: {ds}")
        profile["dataset"]["path"] = str(ds)
    model_id = profile["model"]["id"]
    if model_id.startswith((".", "/", "~")):
        local = (base / Path(model_id).expanduser()).resolve()
        if not local.exists() and not profile["model"]["build_tiny"]:
            raise ProfileError(f"{path}: model.id: local model directory not found: {local}")
        profile["model"]["id"] = str(local)
    if profile["serving"]["python"] and profile["serving"]["python"].startswith("."):
        # not resolve(): a venv's python is a symlink to the base interpreter
        profile["serving"]["python"] = os.path.abspath(base / profile["serving"]["python"])
    if not profile["model"]["served_name"]:
        profile["model"]["served_name"] = Path(model_id).name
    return profile
