"""Profiles: one YAML file says what to serve, how to load it, and what "good enough" is.

The dataclasses below are the single source of truth for every setting: its type, its
default, its help text, and (for the settings a load test can override) its Locust
argument, which `loadtest/settings.py` generates from here. `docs/profiles.md` explains
each. Loading rejects unknown keys, wrong types and missing files with one `ProfileError`
line naming the file and the field path. Relative paths in a profile are relative to the
profile file. A bottom-layer module: it imports nothing of llmcap's but `llmcap.errors`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from llmcap.errors import ProfileError
from llmcap.slo import DEFAULT_SPEC, KEY, Bound, make_bound, ordered, parse_bounds
from llmcap.traces import read_arrivals, read_counts

__all__ = [
    "ProfileError",
    "Profile",
    "load_profile",
    "Slo",
    "SearchParams",
    "ARRIVAL_KINDS",
    "cli_settings",
    "Range",
    "out_of_range",
]

ARRIVAL_KINDS = ("poisson", "poisson-blocked", "constant", "trace")
SEARCH_METHODS = ("steps", "estimate")
DATASET_FORMATS = ("auto", "chat", "batch", "sharegpt", "jsonl", "csv", "text")  # loadtest/prompt_files.py
DEVICES = ("gpu", "cpu")
ENGINES = ("vllm", "transformers", "external")


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting may take: `low` and `high` (None: no end), each end included or not."""

    low: float | None = None
    high: float | None = None
    low_included: bool = True
    high_included: bool = True

    def holds(self, value: float) -> bool:
        low_ok = self.low is None or value > self.low or (self.low_included and value == self.low)
        return low_ok and (self.high is None or value < self.high or (self.high_included and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>=' if self.low_included else '>'} {self.low:g}"
        assert self.low is not None
        return f"in {'[' if self.low_included else '('}{self.low:g}, {self.high:g}{']' if self.high_included else ')'}"


POSITIVE = Range(0, low_included=False)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
SHARE = Range(0, 1, low_included=False)  # a utilization, a ratio: (0, 1]
FRACTION = Range(0, 1)  # an error rate: [0, 1]
PORT = Range(1, 65535)


def out_of_range(name: str, value, valid: Range | None) -> str | None:
    """Why `value` cannot be the setting `name` (one line), or None when it can."""
    if valid is None or value is None or isinstance(value, bool) or valid.holds(value):
        return None
    kind = "an integer" if isinstance(value, int) else "a number"
    return f"{name}: expected {kind} {valid}, got {value!r}"


def setting(default: Any, help: str, flag: str | None = None, choices: tuple | None = None, valid: Range | None = None):
    """A profile field: its default (written once, here), what it means, its Locust argument, and the
    range its numbers must lie in (checked before any load)."""
    meta = {"help": help, "flag": flag, "choices": choices, "valid": valid}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class DatasetSettings:
    task: str = setting("text2sql", "the task template (loadtest/<task>.py)")
    path: str | None = setting(None, "dataset file (default: the task's shipped example)", "--dataset")
    sample: int | None = setting(
        None, "use a seeded random sample of this many records", "--sample", valid=AT_LEAST_ONE
    )
    format: str = setting(
        "auto",
        "task chat: the prompt file's format (auto: told from its content; docs/prompt-files.md)",
        "--dataset-format",
        choices=DATASET_FORMATS,
    )
    prompt_column: str = setting("prompt", "task chat, formats jsonl and csv: the prompt's key", "--prompt-column")
    output_lengths: str = setting(
        "file",
        "task chat: each request's max_tokens from the file where it gives one (a max_tokens or output_tokens "
        "field, a ShareGPT reply's length in the served model's tokens), else --max-tokens; fixed: --max-tokens "
        "for all",
        "--output-lengths",
        choices=("file", "fixed"),
    )


@dataclasses.dataclass
class ModelSettings:
    id: str = setting("", "HF id or local checkpoint path (required)")
    served_name: str | None = setting(None, "model name to request (default: the one /v1/models lists)", "--model")
    tokenizer: str | None = setting(None, "--tokenizer for vLLM")
    build_tiny: bool = setting(False, "build the tiny CPU stand-in model at `id` when it is missing")


@dataclasses.dataclass
class Variant:
    model: str | None = setting(None, "a checkpoint of its own, e.g. a pre-quantized one (default: model.id)")
    url: str | None = setting(
        None, "engine external: this variant's running server, e.g. an FP8 one you started (default serving.url)"
    )
    dtype: str | None = setting(None, "--dtype")
    quantization: str | None = setting(None, "--quantization")
    kv_cache_dtype: str | None = setting(None, "--kv-cache-dtype")
    max_model_len: int | None = setting(None, "--max-model-len", valid=AT_LEAST_ONE)
    gpu_memory_utilization: float | None = setting(None, "--gpu-memory-utilization", valid=SHARE)
    max_num_seqs: int | None = setting(None, "--max-num-seqs", valid=AT_LEAST_ONE)
    enable_prefix_caching: bool | None = setting(None, "--enable-prefix-caching (true) or --no-enable-prefix-caching")
    extra_args: list = setting([], "more vLLM arguments, verbatim")


@dataclasses.dataclass
class ServingSettings:
    engine: str = setting(
        "vllm",
        "the server's engine: vllm, transformers (`transformers serve`) or external (a running server at url)",
        "--engine",
        choices=ENGINES,
    )
    url: str | None = setting(None, "engine external: the running server's base URL, e.g. http://10.0.0.5:8000")
    device: str = setting("gpu", "cpu: vLLM's CPU build, whose limits are checked before start", choices=DEVICES)
    python: str | None = setting(None, "the engine's own interpreter; none: the `vllm` console script")
    host: str = setting("127.0.0.1", "where the server listens")
    port: int = setting(8000, "where the server listens (plan picks the next free port)", valid=PORT)
    max_model_len: int | None = setting(None, "--max-model-len", valid=AT_LEAST_ONE)
    gpu_memory_utilization: float | None = setting(None, "--gpu-memory-utilization", valid=SHARE)
    max_num_seqs: int | None = setting(None, "--max-num-seqs", valid=AT_LEAST_ONE)
    enable_prefix_caching: bool | None = setting(
        None, "vLLM's prefix cache: none keeps vLLM's default (on, as deployed); false turns it off"
    )
    extra_args: list = setting([], "more vLLM arguments, verbatim")
    env: dict = setting({}, "environment for the server")
    nice: int = setting(0, "lower the server's CPU priority (client and server sharing cores)")
    startup_timeout_s: float = setting(900.0, "fail if not healthy by then", valid=POSITIVE)
    variants: dict = setting({}, "name -> Variant")


@dataclasses.dataclass
class RequestSettings:
    max_tokens: int = setting(64, "max_tokens per request", "--max-tokens", valid=AT_LEAST_ONE)
    min_tokens: int | None = setting(
        None, "vLLM min_tokens (fixed output length with --ignore-eos)", "--min-tokens", valid=NON_NEGATIVE
    )
    temperature: float = setting(0.0, "sampling temperature", "--temperature", valid=NON_NEGATIVE)
    ignore_eos: bool = setting(False, "vLLM ignore_eos: always generate max_tokens", "--ignore-eos")
    timeout_s: float = setting(
        60.0, "a request open this long fails with 'timeout'", "--request-timeout-s", valid=POSITIVE
    )
    api_key_env: str | None = setting(None, "environment variable that holds the API key", "--api-key-env")
    tool_choice: str | None = setting(
        None, "function-calling tasks: auto, required or none (default: the task's)", "--tool-choice"
    )
    chat_template_kwargs: dict = setting(
        {}, "vLLM: passed to the chat template, e.g. {enable_thinking: false} for a hybrid-reasoning Qwen3"
    )
    unique_marker: bool = setting(
        True,
        "start each request's first message that not every prompt shares with a per-request marker: the "
        "prefix cache then serves only the shared part, as in production, not a replayed prompt whole",
    )


@dataclasses.dataclass
class Slo:
    bounds: str = setting(
        DEFAULT_SPEC,
        "SLO: latency bounds KEY=MS,...: KEY is e2e, ttft or tpot at a percentile p50 to p99.9, e.g. "
        "ttft_p99_ms=2000,tpot_p99_ms=100, or a preset such as mlperf-llama3.1-8b-server (docs/profiles.md)",
        "--slo",
    )
    # the bounds' first names, kept working: each sets its one bound beside the others
    p95_ms: float | None = setting(
        None, "SLO: end-to-end p95 (ms), as --slo e2e_p95_ms=MS", "--slo-p95-ms", valid=POSITIVE
    )
    p99_ms: float | None = setting(
        None, "SLO: end-to-end p99 (ms), as --slo e2e_p99_ms=MS", "--slo-p99-ms", valid=POSITIVE
    )
    ttft_p95_ms: float | None = setting(
        None, "SLO: time-to-first-token p95 (ms), as --slo ttft_p95_ms=MS", "--slo-ttft-p95-ms", valid=POSITIVE
    )
    max_error_rate: float = setting(0.01, "SLO: highest failed fraction", "--max-error-rate", valid=FRACTION)
    min_achieved_ratio: float = setting(
        0.95, "a step must complete this fraction of its arrivals in its window", valid=SHARE
    )

    def latency_bounds(self) -> list[Bound]:
        """Every latency bound, in the order they are judged; ValueError when the spec is not one."""
        found = parse_bounds(self.bounds)
        for key, limit in (("e2e_p95_ms", self.p95_ms), ("e2e_p99_ms", self.p99_ms), ("ttft_p95_ms", self.ttft_p95_ms)):
            if limit is not None:
                found[key] = make_bound(key, limit)
        if not found:
            raise ValueError("no latency bound: give at least one, e.g. e2e_p95_ms=1000")
        return ordered(found.values())

    def describe(self, le: str = "<=") -> str:
        """'p95 <= 500 ms, errors <= 1 %' (le "≤" where the page is not plain text)."""
        parts = [b.describe(le) for b in self.latency_bounds()]
        return ", ".join([*parts, f"errors {le} {self.max_error_rate * 100:g} %"])

    def record(self) -> dict:
        """What result.json keeps: the settings, and the bounds they came to (a preset's numbers as run)."""
        return dataclasses.asdict(self) | {"bounds_ms": {b.key: b.limit_ms for b in self.latency_bounds()}}

    @classmethod
    def from_record(cls, record: dict) -> Slo:
        """The SLO a result.json recorded, whichever version wrote it (older ones lack `bounds`)."""
        if record.get("bounds_ms"):  # the bounds as run, whatever a preset says today
            spec = ",".join(f"{key}={ms:g}" for key, ms in record["bounds_ms"].items())
            rest = {k: record[k] for k in ("max_error_rate", "min_achieved_ratio") if k in record}
            return cls(bounds=spec, **rest)
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})


@dataclasses.dataclass
class SearchParams:
    method: str = setting(
        "steps",
        "search: 'steps' judges each rate pass or fail and bisects; 'estimate' fits the fraction over "
        "each bound against rate across back-to-back chunks and stops at --interval-half-width",
        "--search-method",
        choices=SEARCH_METHODS,
    )
    interval_half_width: float = setting(
        0.05,
        "search 'estimate': stop when the interval on the maximum is within this share of it each side",
        "--interval-half-width",
        valid=Range(0, 1, low_included=False, high_included=False),
    )
    max_search_seconds: float = setting(
        300.0,
        "search 'estimate': time budget; past it the answer reports the precision reached",
        "--max-search-seconds",
        valid=POSITIVE,
    )
    start_rps: float = setting(
        1.0, "search: first rate (a hint: a failing start rate steps down)", "--start-rps", valid=POSITIVE
    )
    growth: float = setting(
        2.0, "search: rate multiplier until a step fails", "--growth", valid=Range(1, low_included=False)
    )
    precision: float = setting(
        0.03, "search: stop bisecting when (fail-pass)/pass <= this", "--precision", valid=POSITIVE
    )
    step_seconds: float = setting(
        10.0,
        "search: a step's shortest measured window (a clear verdict ends it here; twice this when bisecting)",
        "--step-seconds",
        valid=POSITIVE,
    )
    max_step_seconds: float = setting(
        40.0,
        "search: an undecided step measures on, up to this window; still undecided, it is 'marginal' "
        "and counts as failed",
        "--max-step-seconds",
        valid=POSITIVE,
    )
    warmup_seconds: float = setting(5.0, "search: unmeasured lead-in per step", "--warmup-seconds", valid=NON_NEGATIVE)
    confirm_seconds: float = setting(
        20.0,
        "search: shortest window of the confirmation step at the best rate",
        "--confirm-seconds",
        valid=POSITIVE,
    )
    confidence: float = setting(
        0.95,
        "search: how sure a step's pass or fail must be (and the interval's level)",
        "--confidence",
        valid=Range(0.5, 1, high_included=False),
    )
    max_rps: float | None = setting(None, "search: never offer more than this", "--max-rps", valid=POSITIVE)
    min_rps: float | None = setting(
        None,
        "search: when the start rate fails, step down to this rate before "
        "concluding 'no capacity' (default start rate / 16)",
        "--min-rps",
        valid=POSITIVE,
    )
    min_requests: int | None = setting(
        None,
        "search: a step's shortest window holds at least this many arrivals (default: as many as a pass "
        "needs with none over the bound, e.g. 90 for a p95 bound at 95 % with the default windows)",
        "--min-requests",
        valid=AT_LEAST_ONE,
    )
    max_steps: int = setting(30, "search: give up after this many steps", valid=AT_LEAST_ONE)
    max_lateness_ms: float = setting(
        50.0, "load generator self-check: lateness p99 bound", "--max-lateness-ms", valid=POSITIVE
    )
    arrival: str = setting("poisson", "arrival process", "--arrival", choices=ARRIVAL_KINDS)
    trace: str | None = setting(
        None,
        "arrival trace for arrival 'trace': timestamps or counts per second, CSV or JSONL "
        "(docs/traces.md); each step plays it from its start, sped up to the step's rate",
        "--trace",
    )
    seed: int = setting(0, "seed for arrivals and prompt order", "--seed")
    max_concurrency: int = setting(
        1024, "users (open requests) across all processes", "--max-concurrency", valid=AT_LEAST_ONE
    )


@dataclasses.dataclass
class CostSettings:
    gpu: str = setting("H100-SXM", "key into the GPU table in reports/flops.py")
    gpus_per_replica: int = setting(1, "GPUs one server uses", valid=AT_LEAST_ONE)
    usd_per_gpu_hour: float = setting(2.40, "price of one GPU-hour", valid=NON_NEGATIVE)
    utilizations: list = setting([1.0, 0.5, 0.1], "utilizations to report cost at")
    hosted_prices: str | None = setting(None, "hosted-API price table (default profiles/hosted_prices.yaml)")


@dataclasses.dataclass
class TrafficSettings:
    peak_rps: float | None = setting(None, "forecast: the busiest rate the fleet must hold (req/s)", valid=NON_NEGATIVE)
    average_rps: float | None = setting(
        None, "forecast: the month's mean rate (req/s; default: the trace's, else the peak)", valid=NON_NEGATIVE
    )
    trace: str | None = setting(
        None, "forecast: requests per minute, one per line (or CSV with a 'requests' column), e.g. a day"
    )
    target_utilization: float = setting(
        0.8, "load a replica to this share of its max sustained rate at peak", valid=SHARE
    )
    spare_replicas: int = setting(1, "replicas beyond what the peak needs (1: N+1)", valid=NON_NEGATIVE)

    def given(self) -> bool:
        return self.peak_rps is not None or self.trace is not None


@dataclasses.dataclass
class AccuracySettings:
    enabled: bool = setting(True, "plan: score each variant's answers before its rate search")
    max_tokens: int = setting(
        256, "max_tokens of a scored answer (it ends at the model's own stop, not ignore_eos)", valid=AT_LEAST_ONE
    )
    concurrency: int = setting(
        4, "requests in flight during the pass (low: the answers, not the speed, are measured)", valid=AT_LEAST_ONE
    )
    sample: int | None = setting(
        None, "score a seeded random sample of this many records (default: all)", valid=AT_LEAST_ONE
    )
    threshold: float = setting(
        0.99, "the gate: a variant's accuracy must reach this share of the baseline's", valid=SHARE
    )


@dataclasses.dataclass
class SyntheticSettings:
    input_tokens: str = setting(
        "fixed:256",
        "task synthetic: prompt tokens as the server counts them (chat template included): fixed:N, "
        "uniform:LOW,HIGH, normal:MEAN,SD or list:A,B,...",
        "--input-tokens",
    )
    output_tokens: str = setting(
        "fixed:64", "task synthetic: generated tokens per request (same forms; exact: ignore_eos)", "--output-tokens"
    )
    prompts: int = setting(
        100, "task synthetic: distinct prompts built at start, then cycled", "--synthetic-prompts", valid=AT_LEAST_ONE
    )
    shared_prefix_tokens: int = setting(
        0,
        "task synthetic: tokens of a system prompt every request shares (the prefix cache's part)",
        "--shared-prefix-tokens",
        valid=NON_NEGATIVE,
    )


@dataclasses.dataclass
class SessionSettings:
    turns: int = setting(
        1,
        "requests per conversation: each turn appends the previous answer and the next prompt's question "
        "(1: single requests); the rate stays requests/s, sessions start at rate / turns",
        "--turns",
        valid=AT_LEAST_ONE,
    )
    think_seconds: float = setting(
        0.0,
        "mean pause between an answer and the next turn (exponential; 0: at once)",
        "--think-seconds",
        valid=NON_NEGATIVE,
    )


@dataclasses.dataclass
class Profile:
    name: str = setting("", "names the run and plan directories (default: the profile file's name)")
    description: str = setting("", "one line about the profile")
    dataset: DatasetSettings = dataclasses.field(default_factory=DatasetSettings)
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    serving: ServingSettings = dataclasses.field(default_factory=ServingSettings)
    request: RequestSettings = dataclasses.field(default_factory=RequestSettings)
    slo: Slo = dataclasses.field(default_factory=Slo)
    search: SearchParams = dataclasses.field(default_factory=SearchParams)
    cost: CostSettings = dataclasses.field(default_factory=CostSettings)
    accuracy: AccuracySettings = dataclasses.field(default_factory=AccuracySettings)
    traffic: TrafficSettings = dataclasses.field(default_factory=TrafficSettings)
    synthetic: SyntheticSettings = dataclasses.field(default_factory=SyntheticSettings)
    sessions: SessionSettings = dataclasses.field(default_factory=SessionSettings)
    file: str = ""  # where it was loaded from
    dir: str = ""  # relative paths in it were resolved against this


REQUIRED = ("model.id",)  # but with engine external: the server says what it serves
EXTERNAL_VARIANT = "external"  # the one variant of an external profile that names none


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


class CliSetting(typing.NamedTuple):
    """A setting a Locust argument overrides: where it lives in the profile, and its argument."""

    section: str
    name: str
    kind: type
    help: str
    flag: str
    choices: tuple | None
    valid: Range | None
    default: Any


def cli_settings() -> typing.Iterator[CliSetting]:
    for section, cls in _section_classes().items():
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag"):
                factory = f.default_factory
                default = factory() if callable(factory) else f.default
                meta = f.metadata
                kind = _base_type(hints[f.name])
                yield CliSetting(
                    section, f.name, kind, meta["help"], meta["flag"], meta["choices"], meta["valid"], default
                )


def _section_classes() -> dict:
    hints = _hints(Profile)
    sections = (
        "dataset",
        "model",
        "serving",
        "request",
        "slo",
        "search",
        "cost",
        "accuracy",
        "traffic",
        "synthetic",
        "sessions",
    )
    return {name: hints[name] for name in sections}


def _base_type(hint):
    """int | None -> int; list -> list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


TYPE_NAMES = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "true/false",
    list: "list",
    dict: "mapping",
    type(None): "null",
}


def _check(where: str, path: str, value, hint, choices):
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    accepted = set(allowed) | ({int} if float in allowed else set())  # 2 is a fine number
    name = " or ".join(TYPE_NAMES[t] for t in TYPE_NAMES if t in accepted)
    # bool is an int in Python; a YAML `true` is not a port number
    if isinstance(value, bool) and bool not in accepted:
        raise ProfileError(f"{where}: {path}: expected {name}, got {value!r}")
    if not isinstance(value, tuple(accepted)):
        raise ProfileError(f"{where}: {path}: expected {name}, got {type(value).__name__} {value!r}")
    if choices and value not in choices:
        raise ProfileError(f"{where}: {path}: expected {' or '.join(map(str, choices))}, got {value!r}")
    return float(value) if float in allowed and isinstance(value, int) else value


def _build(where: str, cls, data, path: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: {path or 'top level'}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("file", "dir")}
    if cls is Slo:
        data = _slo_keys(where, data, path)
    for key in data:
        if key not in fields:
            bounds = " or a bound such as tpot_p99_ms" if cls is Slo else ""
            expected = ", ".join(fields) + bounds
            raise ProfileError(f"{where}: {path + '.' if path else ''}{key}: unknown key (expected one of: {expected})")
    hints = _hints(cls)
    values = {}
    for key, f in fields.items():
        sub = f"{path}.{key}" if path else key
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(where, hint, data.get(key), sub)
        elif key in data:
            values[key] = _check(where, sub, data[key], hint, f.metadata.get("choices"))
            why = out_of_range(sub, values[key], f.metadata.get("valid"))
            if why:
                raise ProfileError(f"{where}: {why}")
    built = cls(**values)
    if cls is Slo:
        try:
            built.latency_bounds()
        except ValueError as e:
            raise ProfileError(f"{where}: {path}.bounds: {e}") from None
    return built


FIRST_NAMES = {"p95_ms": "e2e_p95_ms", "p99_ms": "e2e_p99_ms", "ttft_p95_ms": "ttft_p95_ms"}


def _slo_keys(where: str, data: dict, path: str) -> dict:
    """A profile's `slo:` as one `bounds` spec, which a --slo argument then replaces whole. Its bound
    keys (`tpot_p99_ms: 100`) replace the default unless `bounds` is given too; the first names
    (`p95_ms: 500`) set their one bound beside the rest, as they always did."""
    fields = {f.name for f in dataclasses.fields(Slo)}
    keyed = {k: v for k, v in data.items() if k not in fields and KEY.match(str(k))}
    first = {k: v for k, v in data.items() if k in FIRST_NAMES and v is not None}
    if not keyed and not first:
        return data
    items = []
    for key, limit in keyed.items():
        try:
            items.append(make_bound(key, limit))
        except ValueError as e:
            raise ProfileError(f"{where}: {path}.{e}") from None
    for key, limit in first.items():
        try:
            items.append(make_bound(FIRST_NAMES[key], limit))
        except ValueError:
            raise ProfileError(f"{where}: {path}.{key}: expected a number > 0, got {limit!r}") from None
    rest = {k: v for k, v in data.items() if k not in keyed and k not in FIRST_NAMES}
    base = rest.get("bounds") if isinstance(rest.get("bounds"), str) else None
    base = base if base is not None else (DEFAULT_SPEC if not keyed else "")
    return rest | {"bounds": ",".join([base] * bool(base) + [f"{b.key}={b.limit_ms:g}" for b in items])}


def _local_model(path: Path, base: Path, field: str, model_id: str, may_be_built: bool) -> str:
    """A local checkpoint's absolute path (relative to the profile); a hub id as it is."""
    if not model_id.startswith((".", "/", "~")):
        return model_id
    local = (base / Path(model_id).expanduser()).resolve()
    if not local.exists() and not may_be_built:
        raise ProfileError(f"{path}: {field}: local model directory not found: {local}")
    return str(local)


def _check_urls(path: Path, profile: Profile) -> None:
    """An external server's base URL: each variant's own, or serving.url; http(s) either way."""
    external = profile.serving.engine == "external"
    urls = {"serving.url": profile.serving.url}
    urls |= {f"serving.variants.{name}.url": v.url for name, v in profile.serving.variants.items()}
    for field, url in urls.items():
        if url and not external:
            raise ProfileError(f"{path}: {field}: a URL is a running server's: set serving.engine: external")
        if url and not url.startswith(("http://", "https://")):
            raise ProfileError(f"{path}: {field}: expected http://HOST:PORT, got {url!r}")
    if external and not profile.serving.url and not all(v.url for v in profile.serving.variants.values()):
        raise ProfileError(f"{path}: serving.url: required with engine external (the running server's base URL)")


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: profile not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark else ""
        raise ProfileError(f"{path}{at}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    where = str(path)
    profile = _build(where, Profile, raw, "")
    external = profile.serving.engine == "external"
    for dotted in REQUIRED if not external else ():
        holder = profile
        for part in dotted.split("."):
            holder = getattr(holder, part)
        if holder in (None, ""):
            raise ProfileError(f"{path}: {dotted}: required")
    profile.serving.variants = {
        str(name): _build(where, Variant, body, f"serving.variants.{name}")
        for name, body in profile.serving.variants.items()
    }
    if external and not profile.serving.variants:
        profile.serving.variants = {EXTERNAL_VARIANT: Variant()}
    if not profile.serving.variants:
        raise ProfileError(f"{path}: serving.variants: at least one variant is required")
    _check_urls(path, profile)
    profile.name = profile.name or path.stem
    for i, u in enumerate(profile.cost.utilizations):
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not SHARE.holds(u):
            raise ProfileError(f"{path}: cost.utilizations[{i}]: expected a number {SHARE}, got {u!r}")
    traffic = profile.traffic
    base = path.resolve().parent
    profile.file, profile.dir = str(path), str(base)
    if profile.search.trace:
        trace = (base / profile.search.trace).resolve()
        if not trace.is_file():
            raise ProfileError(f"{path}: search.trace: file not found: {trace}")
        read_arrivals(trace)  # a bad row fails here, named by line, before any server starts
        profile.search.trace = str(trace)
    if traffic.trace:
        trace = (base / traffic.trace).resolve()
        if not trace.is_file():
            raise ProfileError(f"{path}: traffic.trace: file not found: {trace}")
        read_counts(trace)
        traffic.trace = str(trace)
    if profile.dataset.path:
        ds = (base / profile.dataset.path).resolve()
        if not ds.is_file():
            raise ProfileError(f"{path}: dataset.path: file not found: {ds}")
        profile.dataset.path = str(ds)
    model_id = profile.model.id
    profile.model.id = _local_model(path, base, "model.id", model_id, profile.model.build_tiny)
    for name, variant in profile.serving.variants.items():
        if variant.model:
            variant.model = _local_model(path, base, f"serving.variants.{name}.model", variant.model, False)
    if profile.serving.python and profile.serving.python.startswith("."):
        # not resolve(): a venv's python is a symlink to the base interpreter
        profile.serving.python = os.path.abspath(base / profile.serving.python)
    if not profile.model.served_name and model_id:
        profile.model.served_name = Path(model_id).name
    return profile
