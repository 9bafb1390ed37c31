"""metrics.jsonl: one JSON object per logged step, `{"step": 12, "loss": 1.23, ...}`.

Steps strictly increase down the file. JSON has no NaN or infinity, so a non-finite value is
written as null. A process killed in the middle of a write can leave a partial last line: readers
skip it, and `repair` cuts it off before a resumed run appends, since that step is run again
after the resume anyway.
"""

import json
import math
import numbers
import os
from pathlib import Path

from rl.metric_keys import STEP

MetricValue = int | float | None


def make_record(step: int, metrics: dict[str, float]) -> dict[str, int | float]:
    """The step's record: `{"step": step, **metrics}` with every value a plain int or float
    (numpy scalars and 0-d tensors converted). Raises on values that are not numbers."""
    if STEP in metrics:
        raise ValueError(f"metrics may not contain {STEP!r}: pass the step as log()'s first argument")
    record: dict[str, int | float] = {STEP: int(step)}
    for key, value in metrics.items():
        record[str(key)] = _plain_number(key, value)
    return record


def encode_line(record: dict[str, MetricValue]) -> str:
    """The record's line in the file (with its newline); non-finite values become null."""
    as_json = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in record.items()}
    return json.dumps(as_json, allow_nan=False) + "\n"


def read_records(path: Path) -> list[dict[str, MetricValue]]:
    """Every complete line of the file, in order (a partial last line is skipped)."""
    records, _ = _parse(Path(path).read_bytes(), path)
    return records


def repair(path: Path) -> list[dict[str, MetricValue]]:
    """Read the file and cut off a partial last line, so that appends start on a fresh line."""
    raw = Path(path).read_bytes()
    records, complete = _parse(raw, path)
    if not complete:
        rewrite(path, records)
    return records


def rewrite(path: Path, records: list[dict[str, MetricValue]]) -> None:
    """Replace the file with `records`, atomically: readers see the old file or the new one."""
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "w", encoding="utf-8") as f:
        f.writelines(encode_line(record) for record in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, path)


def _parse(raw: bytes, path: Path) -> tuple[list[dict[str, MetricValue]], bool]:
    """(records, whether the file ended cleanly after its last record)."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    # split leaves "" after a final newline; anything else there is an unterminated last line
    tail = lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {number} is not JSON ({e}); the file is corrupt") from None
    return records, not tail.strip()


def _plain_number(key: str, value: object) -> int | float:
    if isinstance(value, numbers.Integral):  # bool too: true is 1
        return int(value)
    if isinstance(value, numbers.Real) or hasattr(value, "__float__"):
        return float(value)  # numpy scalars, 0-d arrays and tensors too
    raise TypeError(f"metric {key!r} is a {type(value).__name__}; log numbers only")
