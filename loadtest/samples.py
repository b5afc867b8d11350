"""Raw per-request samples: the record layout, the writer, the reader.

A run directory holds fixed-size binary records (`samples.bin`, layout in
`samples.json`) that numpy maps in one call, the inter-token gaps of all requests
back to back (`itl_ms.f32`, request i owns `itl_count[i]` of them, in order), and
one JSON line per failed request (`errors.jsonl`). Records are appended as they
complete, so an interrupted run keeps everything it measured; a record cut short
by a crash is dropped on read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SAMPLE_DTYPE = np.dtype([
    ("scheduled_s", "<f8"),   # when the arrival process said to send
    ("issued_s", "<f8"),      # when the dispatcher handed out its ticket (late: busy event loop)
    ("sent_s", "<f8"),        # when a user sent it (later than issued: no user was free)
    ("first_token_s", "<f8"), # first non-empty content delta; NaN if none
    ("end_s", "<f8"),         # last byte, error, or timeout
    ("status", "<i2"),        # HTTP status; 0 if none was received
    ("error", "<i1"),         # index into ERROR_KINDS; 0 = ok
    ("queued", "<i1"),        # 1 if no user was idle when it was due (pool exhausted)
    ("prompt_tokens", "<i4"), # from the usage chunk; -1 if none
    ("completion_tokens", "<i4"),
    ("itl_count", "<i4"),     # number of inter-token gaps stored for it
    ("prompt_hash", "<u8"),   # which prompt, without its text
    ("worker", "<i2"),
])
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
        schema = {"dtype": SAMPLE_DTYPE.descr, "error_kinds": ERROR_KINDS,
                  "itl_file": ITL_FILE, "itl_dtype": "<f4", "time": "unix seconds"}
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


def read_samples(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Samples and the flat array of inter-token gaps (ms). Tolerates a torn last record."""
    run_dir = Path(run_dir)
    path = run_dir / SAMPLES_FILE
    if not path.exists():
        return np.zeros(0, SAMPLE_DTYPE), np.zeros(0, np.float32)
    raw = path.read_bytes()
    whole = len(raw) - len(raw) % SAMPLE_DTYPE.itemsize
    samples = np.frombuffer(raw[:whole], dtype=SAMPLE_DTYPE)
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
