"""Trace files: what real traffic looked like, read once, checked row by row.

Two shapes of file, CSV (a header row) or JSON Lines (one object per line):

- **arrival times**: a `timestamp` column or field, in seconds (any origin: the first arrival is time 0),
  or `timestamp_ms` in milliseconds, or a date-time string as the Azure LLM inference traces write it
  (`TIMESTAMP`, "2023-11-16 18:15:46.6805900"; their other columns are ignored). Each row is one request.
- **counts**: a `requests` (or `count`) column or field, or a bare count per line with no header: how many
  requests arrived in each consecutive bin (one second for arrivals, one minute for a fleet's day).

A bad row fails with the file and line named (BadInput, exit 2), before any load is offered.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path

from llmcap.errors import BadInput

TIME_FIELDS = {"timestamp": 1.0, "timestamp_s": 1.0, "timestamp_ms": 0.001}
COUNT_FIELDS = ("requests", "count")


@dataclasses.dataclass
class ArrivalTrace:
    """Arrivals as offsets in seconds from the trace's start (`times_s`, sorted), or as counts per
    `bin_s` (`counts`): one of the two."""

    source: str
    times_s: list[float] | None = None
    counts: list[float] | None = None
    bin_s: float = 1.0

    @property
    def requests(self) -> float:
        return float(len(self.times_s)) if self.times_s is not None else float(sum(self.counts or []))

    @property
    def duration_s(self) -> float:
        """One period of the trace. Arrival times end one mean gap after the last arrival, so a trace
        played in a loop keeps its mean rate across the seam."""
        if self.times_s is not None:
            n = len(self.times_s)
            span = self.times_s[-1] - self.times_s[0]
            return span + (span / (n - 1) if n > 1 and span > 0 else 1.0)
        return len(self.counts or []) * self.bin_s

    @property
    def mean_rps(self) -> float:
        return self.requests / self.duration_s

    def describe(self) -> str:
        kind = "arrival times" if self.times_s is not None else f"counts per {self.bin_s:g} s"
        return f"{Path(self.source).name} ({kind}, {self.duration_s:.0f} s, mean {self.mean_rps:.3g} req/s)"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _rows(path: Path) -> list[tuple[int, dict | list]]:
    """(line number, row) pairs: a dict per JSON line or CSV row under a header, a list per bare row."""
    try:
        text = path.read_text()
    except OSError as e:
        raise BadInput(f"{path}: cannot read the trace ({e.strerror or e})") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        rows: list[tuple[int, dict | list]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{number}: not a JSON object ({e.msg})") from None
            if not isinstance(row, dict):
                raise BadInput(f"{path}:{number}: expected a JSON object per line")
            rows.append((number, {str(k).strip().lower(): v for k, v in row.items()}))
        return rows
    table = list(csv.reader(lines))
    if table and table[0] and not _is_number(table[0][0].strip()):  # a header
        header = [h.strip().lower() for h in table[0]]
        return [
            (number, dict(zip(header, (c.strip() for c in row), strict=False)))
            for number, row in enumerate(table[1:], 2)
            if row and "".join(row).strip()
        ]
    return [(number, [c.strip() for c in row]) for number, row in enumerate(table, 1) if row and "".join(row).strip()]


def read_counts(path: str | Path, what: str = "requests") -> list[float]:
    """Counts per bin (see the module's doc); a row that is not a count of 0 or more is named."""
    path = Path(path)
    rows = _rows(path)
    counts = []
    for number, row in rows:
        if isinstance(row, dict):
            key = next((k for k in COUNT_FIELDS if k in row), None)
            if key is None:
                where = number if path.read_text().lstrip().startswith("{") else 1  # a CSV's header
                raise BadInput(
                    f"{path}:{where}: expected a '{COUNT_FIELDS[0]}' column (or one count per line), got {list(row)}"
                )
            cell = row[key]
        else:
            cell = row[0]
        if not _is_number(str(cell)) or float(cell) < 0:
            raise BadInput(f"{path}:{number}: expected a count of {what} (0 or more), got {cell!r}")
        counts.append(float(cell))
    if not counts or not sum(counts):
        raise BadInput(f"{path}: no {what} in the trace")
    return counts


def _seconds(value, scale: float) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) * scale if math.isfinite(value) else None
    text = str(value).strip()
    if _is_number(text):
        return float(text) * scale
    try:
        # Azure's traces write 7 fractional digits; Python reads 6
        head, dot, frac = text.partition(".")
        return datetime.fromisoformat(head + (dot + frac[:6] if dot else "")).timestamp()
    except ValueError:
        return None


def read_arrivals(path: str | Path) -> ArrivalTrace:
    """An arrival trace: times when a row has a timestamp, else counts per second."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise BadInput(f"{path}: no rows in the trace")
    first = rows[0][1]
    field = next((k for k in TIME_FIELDS if isinstance(first, dict) and k in first), None)
    if field is None:
        return ArrivalTrace(str(path), counts=read_counts(path), bin_s=1.0)
    times = []
    for number, row in rows:
        assert isinstance(row, dict)
        t = _seconds(row.get(field), TIME_FIELDS[field])
        if t is None:
            raise BadInput(f"{path}:{number}: {field}: expected a time, got {row.get(field)!r}")
        times.append(t)
    times.sort()
    t0 = times[0]
    trace = ArrivalTrace(str(path), times_s=[t - t0 for t in times])
    if len(times) < 2 or trace.duration_s <= 0:
        raise BadInput(f"{path}: a trace of arrival times needs at least two distinct times")
    return trace
