"""Profiles: the schema's errors are one line naming file and field; shipped profiles build exact commands."""

import argparse
import copy
import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from llmcap.profile import Profile, ProfileError, Range, Variant, cli_settings, load_profile
from loadtest.settings import RUN_OPTIONS, resolve
from serving.engines import served_model_name
from serving.launcher import build_command
from tests.conftest import REPO, SHARED

CPU = REPO / "profiles" / "cpu-tiny.yaml"
H100 = REPO / "profiles" / "text2sql-qwen3-4b-h100.yaml"
SHIPPED = sorted(p for p in (REPO / "profiles").rglob("*.yaml") if p.name != "hosted_prices.yaml")
ENGINE_PY = str(REPO / ".engine" / "venv" / "bin" / "python")
TINY = str(REPO / ".engine" / "tiny-qwen3")


def test_cpu_profile_commands():
    p = load_profile(CPU)
    common = [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        TINY,
        "--served-model-name",
        "tiny-qwen3",
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
        "--dtype",
        "bfloat16",
    ]
    # the prefix cache as vLLM's default: on; eager: compiling costs a CPU start 12 s and buys no measurable speed
    tail = ["--max-model-len", "2048", "--gpu-memory-utilization", "0.3", "--enforce-eager"]
    assert build_command(p, "bf16") == [ENGINE_PY, *common, *tail]
    assert build_command(p, "fp8-kv") == [ENGINE_PY, *common, "--kv-cache-dtype", "fp8", *tail]
    assert build_command(p, "bf16", port=9001)[10] == "9001"


@pytest.mark.skipif(not (SHARED / "datasets" / "text2sql").is_dir(), reason="../shared/datasets not present")
def test_h100_profile_commands():
    p = load_profile(H100)
    base = [
        "vllm",
        "serve",
        "distil-labs/distil-qwen3-4b-text2sql",
        "--served-model-name",
        "qwen3-4b-text2sql",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--dtype",
        "bfloat16",
    ]
    tail = [
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.92",
        "--max-num-seqs",
        "256",
    ]
    assert build_command(p, "bf16") == [*base, *tail]
    assert build_command(p, "fp8") == [*base, "--quantization", "fp8", *tail]
    assert p.cost.usd_per_gpu_hour == 2.40 and p.cost.gpu == "H100-SXM"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


MINIMAL = """name: t
model: {id: some/model}
serving:
  variants:
    bf16: {dtype: bfloat16}
"""


def test_defaults_fill_in(tmp_path):
    p = load_profile(write(tmp_path, MINIMAL))
    assert p.slo.describe().startswith("p95 <= 1000 ms,") and p.search.growth == 2.0 and p.model.served_name == "model"


@pytest.mark.parametrize(
    "text,message",
    [
        (MINIMAL + "slo: {p95: 300}\n", "p.yaml: slo.p95: unknown key"),
        (MINIMAL + "slo: {p95_ms: fast}\n", "p.yaml: slo.p95_ms: expected a number > 0, got 'fast'"),
        (MINIMAL.replace("{dtype: bfloat16}", "{dtyp: bfloat16}"), "p.yaml: serving.variants.bf16.dtyp: unknown key"),
        (MINIMAL + "serving: {port: true}\n", None),  # duplicate key at top level: YAML keeps the last
        (MINIMAL + "dataset: {path: nowhere.jsonl}\n", "p.yaml: dataset.path: file not found"),
        (MINIMAL + "cost: {utilizations: [1.5]}\n", "p.yaml: cost.utilizations[0]: expected a number in (0, 1]"),
        ("name: t\nmodel: {id: [unclosed\n", "p.yaml:3: malformed YAML"),
        ("name: t\n", "p.yaml: model.id: required"),
        ("serving: {engine: external}\n", "p.yaml: serving.url: required with engine external"),
        ("model: {id: m}\nserving: {url: 'http://x:1', variants: {a: {}}}\n", "p.yaml: serving.url: a URL is a"),
        ("serving: {engine: external, variants: {a: {url: 'x:1'}}}\n", "p.yaml: serving.variants.a.url: expected"),
        (MINIMAL.replace("some/model", "./missing-model"), "p.yaml: model.id: local model directory not found"),
    ],
)
def test_profile_errors_are_one_line(tmp_path, text, message):
    with pytest.raises(ProfileError) as e:
        load_profile(write(tmp_path, text))
    assert "\n" not in str(e.value)
    if message:
        assert message in str(e.value), str(e.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="../shared/datasets not present")
@pytest.mark.parametrize(
    "path",
    SHIPPED,
    ids=lambda p: p.name,
)
def test_every_shipped_profile_loads_and_builds(path):
    p = load_profile(path)
    for variant in p.serving.variants:
        cmd = build_command(p, variant)
        assert cmd is not None
        if p.serving.engine == "transformers":
            assert cmd[-1] == served_model_name(p, variant)  # the path it pins every request to
            continue
        assert "--served-model-name" in cmd and p.model.served_name in cmd
        if p.dataset.task in ("smart_home", "git_assistant"):
            assert cmd[cmd.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in cmd


def test_docs_name_every_setting():
    """docs/profiles.md explains every field the profile model defines (and nothing it no longer has)."""
    import dataclasses
    import typing

    from llmcap.profile import Profile

    rows = [line for line in (REPO / "docs" / "profiles.md").read_text().splitlines() if line.startswith("| `")]
    hints = typing.get_type_hints(Profile)
    missing = []
    for section, cls in hints.items():
        if not dataclasses.is_dataclass(cls):
            continue
        for f in dataclasses.fields(cls):
            if not any(f"`{section}.{f.name}`" in row or (f"`{section}." in row and f.name in row) for row in rows):
                missing.append(f"{section}.{f.name}")
    assert not missing, missing
    assert not any("request.stream" in row for row in rows)


def hybrid_qwen3(path: Path) -> bool:
    """A shipped profile serving a hybrid-reasoning Qwen3 (not the tiny stand-in, not an Instruct-2507)."""
    model = load_profile(path).model
    return not model.build_tiny and "qwen3" in model.id.lower() and "instruct-2507" not in model.id.lower()


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="../shared/datasets not present")
@pytest.mark.parametrize("path", [p for p in SHIPPED if hybrid_qwen3(p)], ids=lambda p: p.name)
def test_every_shipped_qwen3_profile_turns_thinking_off(path):
    """A hybrid-reasoning Qwen3 thinks first unless told not to: every request of a shipped profile
    naming one carries the chat template's switch (the tiny stand-in's template has no thinking)."""
    from loadtest.bodies import build_bodies
    from loadtest.datasets import load_prompts
    from loadtest.tasks import TASKS

    p = load_profile(path)
    assert p.serving.engine == "vllm"
    prompts = load_prompts(TASKS[p.dataset.task], p.dataset.path, sample=3)
    for head, tail in build_bodies(prompts, "m", p.request, p.serving.engine):
        body = json.loads(head + b"[1.1] " + tail if tail else head)
        assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_an_external_server_needs_only_its_url(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("serving: {engine: external, url: 'http://10.0.0.5:8000'}\n")
    p = load_profile(path)
    assert p.name == "mine" and list(p.serving.variants) == ["external"]
    assert p.model.id == "" and p.model.served_name is None  # the server's /v1/models says


BASE = {"name": "t", "model": {"id": "some/model"}, "serving": {"variants": {"bf16": {"dtype": "bfloat16"}}}}


def ranged_settings():
    """(field path, range, type) of every setting with a range: the profile's sections and a variant's."""
    for section, cls in typing.get_type_hints(Profile).items():
        if dataclasses.is_dataclass(cls):
            yield from ranged_fields(cls, (section,))
    yield from ranged_fields(Variant, ("serving", "variants", "bf16"))


def ranged_fields(cls, prefix: tuple):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("valid"):
            kind = next(t for t in (int, float) if t in (hints[f.name], *typing.get_args(hints[f.name])))
            yield (*prefix, f.name), f.metadata["valid"], kind


def outside(valid: Range, kind: type) -> list:
    """Values just past each end of the range (the end itself where it is excluded)."""
    step = 1 if kind is int else 0.5
    values = []
    if valid.low is not None:
        values.append(kind(valid.low - step if valid.low_included else valid.low))
    if valid.high is not None:
        values.append(kind(valid.high + step if valid.high_included else valid.high))
    return values


def ends(valid: Range, kind: type) -> list:
    """The ends the range includes: a checker that rejected them would be too strict."""
    included = [(valid.low, valid.low_included), (valid.high, valid.high_included)]
    return [kind(end) for end, inside in included if end is not None and inside]


def profile_with(tmp_path, path: tuple, value) -> Path:
    data = copy.deepcopy(BASE)
    holder = data
    for key in path[:-1]:
        holder = holder.setdefault(key, {})
    holder[path[-1]] = value
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


RANGED = list(ranged_settings())


def test_the_ranges_cover_every_number_a_run_depends_on():
    named = {".".join(path) for path, _valid, _kind in RANGED}
    assert len(RANGED) >= 45
    for must in ("dataset.sample", "slo.p95_ms", "slo.max_error_rate", "search.confidence", "sessions.turns"):
        assert must in named


@pytest.mark.parametrize("path,valid,kind", RANGED, ids=[".".join(p) for p, *_ in RANGED])
def test_a_number_out_of_its_range_is_one_line_naming_the_field(tmp_path, path, valid, kind):
    for bad in outside(valid, kind):
        file = profile_with(tmp_path, path, bad)
        with pytest.raises(ProfileError) as e:
            load_profile(file)
        what = "an integer" if kind is int else "a number"
        assert str(e.value) == f"{file}: {'.'.join(path)}: expected {what} {valid}, got {bad!r}"
    for good in ends(valid, kind):
        load_profile(profile_with(tmp_path, path, good))


def test_every_ranged_argument_is_checked_before_the_run():
    flags = [(flag, kind, valid) for flag, kind, _help, valid in RUN_OPTIONS if valid]
    flags += [(s.flag, s.kind, s.valid) for s in cli_settings() if s.valid]
    assert len(flags) >= 25
    for flag, kind, valid in flags:
        for bad in outside(valid, kind):
            with pytest.raises(ProfileError) as e:
                resolve(argparse.Namespace(**{flag.lstrip("-").replace("-", "_"): bad}, host=""), "text2sql")
            assert str(e.value).startswith(f"{flag}: expected ") and str(e.value).endswith(f", got {bad!r}")
