"""The run directory: every file a run writes, and the one place that reads and writes each.

    runs/<UTC time>-<name>/
      samples.bin, samples.json   fixed-size binary records, one per request (layout below)
      itl_ms.f32                  inter-token gaps of all requests back to back
      errors.jsonl                one line per failed request
      steps.jsonl                 one line per finished step, as it finishes
      progress.json               the step in progress (for `llmcap plan` and anyone watching)
      result.json                 the answer, its steps and how it was produced
      telemetry/<target>.jsonl    one line per scrape: {"t": unix s, "m": [[name, {labels}, value], ...]}
      server/pid, server/config.json, server/vllm.log   the server llmcap started, if any
      prompts.jsonl, texts.jsonl  only with --store-text
      capacity.json, report.*     the capacity report
      accuracy/answers[-N].jsonl  the quality pass: each prompt's answer text, reference and scores
      accuracy/summary[-N].json   its accuracy (N: the pass's number, when a variant is scored twice)

    plans/<UTC time>-<name>/      `llmcap plan`: plan.json, index.*, comparison.*, and a run
      <variant>/[run-<k>/]        directory per variant (per repeat with --repeats)

Samples are appended as they complete, so an interrupted run keeps everything it measured;
a record cut short by a crash is dropped on read. A bottom-layer module: numpy, the
standard library and llmcap.errors only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from llmcap.errors import BadInput

RESULT_FILE = "result.json"
# result.json's layout: 1 (no version field) SLO as p95_ms/p99_ms/ttft_p95_ms only; 2 adds slo.bounds
# (any latency at any percentile) and each step's at_bounds, goodput_rps, slo_attainment, tpot_*_ms
RESULT_SCHEMA_VERSION = 2
STEPS_FILE = "steps.jsonl"
PROGRESS_FILE = "progress.json"
PROMPTS_FILE = "prompts.jsonl"
CAPACITY_FILE = "capacity.json"
CLOSED_LOOP_DIR = "closed-loop"  # llmcap plan --concurrency: the closed-loop sweep's own run directory
SYNTHETIC_FILE = "synthetic_lengths.jsonl"  # task synthetic: each prompt's drawn lengths, by prompt_hash
TELEMETRY_DIR = "telemetry"
SERVER_DIR = "server"
ACCURACY_DIR = "accuracy"
PLAN_FILE = "plan.json"  # in a plan directory, from its start: what its runs' reports link back to
# result.json's latency_at_max: these figures of step_at_max
LATENCY_KEYS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "itl_p50_ms",
    "itl_p95_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
)


def step_at_max(steps: list[dict], max_sustained_rps: float | None) -> dict | None:
    """The step whose figures a result gives at its answer: the last confirming (or fixed-rate) step
    that passed; where none confirmed (the estimator confirms nothing), the step that passed at the
    highest rate not over the answer."""
    confirmed = [s for s in steps if s.get("phase") in ("confirm", "fixed") and s.get("passed")]
    if confirmed:
        return confirmed[-1]
    if not max_sustained_rps:
        return None
    held = [s for s in steps if s.get("passed") and 0 < (s.get("offered_rps") or 0) <= max_sustained_rps * (1 + 1e-9)]
    return max(held, key=lambda s: s["offered_rps"], default=None)


# -- samples -------------------------------------------------------------------------------------
SAMPLE_DTYPE = np.dtype(
    [
        ("scheduled_s", "<f8"),  # when the arrival process said to send
        ("issued_s", "<f8"),  # when the dispatcher handed out its ticket (late: busy event loop)
        ("sent_s", "<f8"),  # when a user sent it (later than issued: no user was free)
        ("first_token_s", "<f8"),  # first non-empty content delta; NaN if none
        ("end_s", "<f8"),  # last byte, error, or timeout
        ("status", "<i2"),  # HTTP status; 0 if none was received
        ("error", "<i1"),  # index into ERROR_KINDS; 0 = ok
        ("queued", "<i1"),  # 1 if no user was idle when it was due (pool exhausted)
        ("prompt_tokens", "<i4"),  # from the usage chunk; -1 if none
        ("completion_tokens", "<i4"),
        ("itl_count", "<i4"),  # number of inter-token gaps stored for it
        ("prompt_hash", "<u8"),  # which prompt, without its text
        ("worker", "<i2"),
        ("turn", "<i2"),  # a session's turn, from 0 (single requests: 0)
    ]
)
ERROR_KINDS = ("", "connect", "timeout", "http_status", "bad_stream", "no_tokens")
ERROR_CODE = {kind: i for i, kind in enumerate(ERROR_KINDS)}

SAMPLES_FILE = "samples.bin"
ITL_FILE = "itl_ms.f32"
ERRORS_FILE = "errors.jsonl"
SCHEMA_FILE = "samples.json"
TEXTS_FILE = "texts.jsonl"  # only with --store-text: completions; prompts.jsonl maps prompt_hash -> request


class SampleWriter:
    """Appends batches to a run directory; every batch is flushed to the OS at once."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        schema = {
            "dtype": SAMPLE_DTYPE.descr,
            "error_kinds": ERROR_KINDS,
            "itl_file": ITL_FILE,
            "itl_dtype": "<f4",
            "time": "unix seconds",
        }
        (self.run_dir / SCHEMA_FILE).write_text(json.dumps(schema, indent=1))
        self._samples = open(self.run_dir / SAMPLES_FILE, "ab")
        self._itl = open(self.run_dir / ITL_FILE, "ab")
        self._errors = open(self.run_dir / ERRORS_FILE, "a")
        self.count = 0

    def append(self, samples: np.ndarray, itl_ms: np.ndarray, errors: list, texts: list | None = None) -> None:
        """`errors`: [index in this batch, kind, message] for each failed request;
        `texts`: [index in this batch, completion] (only when text is stored)."""
        if len(samples):
            # gaps first: a reader trusts a record only once its gaps are there
            self._itl.write(np.ascontiguousarray(itl_ms, dtype="<f4").tobytes())
            self._itl.flush()
            self._samples.write(np.ascontiguousarray(samples, dtype=SAMPLE_DTYPE).tobytes())
            self._samples.flush()
        for index, kind, message in errors:
            self._errors.write(json.dumps({"sample": self.count + index, "kind": kind, "message": message}) + "\n")
        if errors:
            self._errors.flush()
        if texts:
            with open(self.run_dir / TEXTS_FILE, "a") as f:
                for index, text in texts:
                    f.write(json.dumps({"sample": self.count + index, "completion": text}) + "\n")
        self.count += len(samples)

    def close(self) -> None:
        for f in (self._samples, self._itl, self._errors):
            f.close()


def _written_dtype(run_dir: Path) -> np.dtype:
    """The record layout the run directory says it was written with (samples.json)."""
    try:
        descr = json.loads((run_dir / SCHEMA_FILE).read_text())["dtype"]
        return np.dtype([tuple(field) for field in descr])
    except (OSError, ValueError, KeyError, TypeError):
        return SAMPLE_DTYPE


def read_samples(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Samples and the flat array of inter-token gaps (ms). Tolerates a torn last record."""
    run_dir = Path(run_dir)
    path = run_dir / SAMPLES_FILE
    if not path.exists():
        return np.zeros(0, SAMPLE_DTYPE), np.zeros(0, np.float32)
    raw = path.read_bytes()
    written = _written_dtype(run_dir)
    whole = len(raw) - len(raw) % written.itemsize
    samples = np.frombuffer(raw[:whole], dtype=written)
    if written != SAMPLE_DTYPE:
        # a run directory of an earlier llmcap: its fields copied, the newer ones zero
        upgraded = np.zeros(len(samples), SAMPLE_DTYPE)
        for name in set(written.names or ()) & set(SAMPLE_DTYPE.names or ()):
            upgraded[name] = samples[name]
        samples = upgraded
    itl_path = run_dir / ITL_FILE
    itl = np.fromfile(itl_path, dtype="<f4") if itl_path.exists() else np.zeros(0, np.float32)
    need = int(samples["itl_count"].sum(dtype=np.int64))
    if len(itl) < need:  # crash between the two writes: drop records without their gaps
        ends = np.cumsum(samples["itl_count"], dtype=np.int64)
        keep = int(np.searchsorted(ends, len(itl), side="right"))
        samples = samples[:keep]
        need = int(ends[keep - 1]) if keep else 0
    return samples, itl[:need]


def itl_of(samples: np.ndarray, itl: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The gaps that belong to the samples selected by `mask`."""
    counts = samples["itl_count"].astype(np.int64)
    owner = np.repeat(np.arange(len(samples)), counts)
    return itl[mask[owner]] if len(itl) else itl


def read_errors(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / ERRORS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # torn last line
    return out


# -- JSON files ----------------------------------------------------------------------------------
def _clean(value):
    """JSON has neither NaN nor infinity (Python's "Infinity" breaks strict readers): write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data, indent: int | None = 1) -> None:
    """Atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=indent))
    tmp.replace(path)


def read_json(path: str | os.PathLike):
    """The file's JSON, or None when it is missing or torn."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_run_dir(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / RESULT_FILE).is_file()


def write_result(run_dir: str | os.PathLike, result: dict) -> None:
    write_json(Path(run_dir) / RESULT_FILE, result)


def read_result(run_dir: str | os.PathLike) -> dict | None:
    """A run's result.json, of this layout or an older one (readers take what is missing as absent);
    one a newer llmcap wrote is one line, exit 2."""
    result = read_json(Path(run_dir) / RESULT_FILE)
    version = (result or {}).get("schema_version", 1)
    if not isinstance(version, int) or version > RESULT_SCHEMA_VERSION:
        raise BadInput(
            f"{Path(run_dir) / RESULT_FILE}: schema_version {version} is newer than this llmcap reads "
            f"({RESULT_SCHEMA_VERSION}): upgrade llmcap"
        )
    return result


def write_synthetic_lengths(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    with open(Path(run_dir) / SYNTHETIC_FILE, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_synthetic_lengths(run_dir: str | os.PathLike) -> dict[int, dict]:
    """prompt_hash -> {input_tokens, output_tokens} as drawn (empty when the run had no synthetic task)."""
    path = Path(run_dir) / SYNTHETIC_FILE
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["prompt_hash"]: row for row in rows}


def append_step(run_dir: str | os.PathLike, step: dict) -> None:
    with open(Path(run_dir) / STEPS_FILE, "a") as f:
        f.write(json.dumps(_clean(step)) + "\n")


def read_steps(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / STEPS_FILE
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError:
            break  # torn last line
    return steps


def write_progress(run_dir: str | os.PathLike, progress: dict) -> None:
    write_json(Path(run_dir) / PROGRESS_FILE, progress, indent=None)


def read_progress(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / PROGRESS_FILE) or {}


# -- telemetry -----------------------------------------------------------------------------------
Scrape = tuple[float, list]  # (t, [[name, labels, value], ...])


def telemetry_path(run_dir: str | os.PathLike, target: str) -> Path:
    return Path(run_dir) / TELEMETRY_DIR / f"{target}.jsonl"


def scrape_line(t: float, rows: list) -> str:
    return json.dumps({"t": t, "m": rows}, separators=(",", ":")) + "\n"


def load_scrapes(path: str | os.PathLike) -> list[Scrape]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        out.append((row["t"], row["m"]))
    return out


# -- the server llmcap started ---------------------------------------------------------------------
def server_log_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / SERVER_DIR / "vllm.log"


def write_server_pid(run_dir: str | os.PathLike, pid: int) -> None:
    path = Path(run_dir) / SERVER_DIR / "pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(pid))


def write_server_config(run_dir: str | os.PathLike, config: dict) -> None:
    write_json(Path(run_dir) / SERVER_DIR / "config.json", config)


def read_server_config(run_dir: str | os.PathLike) -> dict | None:
    return read_json(Path(run_dir) / SERVER_DIR / "config.json")


# -- the quality pass ---------------------------------------------------------------------------------
def accuracy_paths(run_dir: str | os.PathLike, number: int = 1) -> tuple[Path, Path]:
    """(answers, summary) of a run's `number`-th quality pass."""
    suffix = "" if number == 1 else f"-{number}"
    folder = Path(run_dir) / ACCURACY_DIR
    return folder / f"answers{suffix}.jsonl", folder / f"summary{suffix}.json"


def write_accuracy(run_dir: str | os.PathLike, answers: list[dict], summary: dict, number: int = 1) -> None:
    answers_path, summary_path = accuracy_paths(run_dir, number)
    answers_path.parent.mkdir(parents=True, exist_ok=True)
    with open(answers_path, "w") as f:
        for row in answers:
            f.write(json.dumps(_clean(row)) + "\n")
    write_json(summary_path, summary)


def read_accuracy(run_dir: str | os.PathLike, number: int = 1) -> tuple[list[dict], dict] | None:
    """(answers, summary) of a quality pass, or None if the run has none."""
    answers_path, summary_path = accuracy_paths(run_dir, number)
    if not answers_path.is_file() or not summary_path.is_file():
        return None
    answers = [json.loads(line) for line in answers_path.read_text().splitlines() if line.strip()]
    return answers, read_json(summary_path)


def plan_dir_of(run_dir: str | os.PathLike) -> Path | None:
    """The plan directory a run belongs to (its parent, or grandparent for a repeat), if any."""
    for parent in list(Path(run_dir).resolve().parents)[:2]:
        if (parent / PLAN_FILE).is_file():
            return parent
    return None
