"""``devicelab export RUN_DIR --format csv|parquet``: every trial record of ``trials.jsonl``
(warm-ups and failed trials included; filter on ``warmup`` and ``status``) as one row.

Nested dicts are flattened (``device_info.cpu``, ``engine_timings.prefill_ms``,
``quality.rouge_l``); lists become JSON strings; ``output_text`` is left out unless asked for.
Parquet needs pyarrow: ``pip install 'devicelab[report]'``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._errors import MissingDependencyError, UsageError
from ._rundir import load_run

FORMATS = ("csv", "parquet")
NESTED = ("device_info", "engine_timings", "quality")  # null here: blank nested columns


def flatten(record: Mapping[str, Any], with_text: bool = False) -> dict[str, Any]:
    """One flat row: dicts as ``parent.child`` columns, lists as JSON strings."""
    row: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{prefix}.{k}", v)
        elif isinstance(value, list | tuple):
            row[prefix] = json.dumps(value)
        else:
            row[prefix] = value

    for key, value in record.items():
        if (key == "output_text" and not with_text) or (key in NESTED and value is None):
            continue
        put(key, value)
    return row


def columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def trial_rows(run_dir: Path, with_text: bool = False) -> list[dict[str, Any]]:
    """Every trial record of the run (warm-ups and failures too), flattened: each key of
    the record's JSON form is a column, so every field of FIELDS is one."""
    return [flatten(r.to_json(), with_text) for r in load_run(run_dir).records]


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingDependencyError(
            "Parquet export needs pyarrow, which is not installed. Install it with "
            "`pip install 'devicelab[report]'` (or export CSV with --format csv)."
        ) from None
    return pyarrow


def write_parquet(rows: list[dict[str, Any]], out: Path) -> None:
    pa = _pyarrow()
    arrays = {}
    for col in columns(rows):
        values = [row.get(col) for row in rows]
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
            arrays[col] = pa.array([None if v is None else str(v) for v in values])
    pa.parquet.write_table(pa.table(arrays), str(out))


def export(
    run_dir: Path, fmt: str, out: Path | None = None, with_text: bool = False
) -> tuple[Path, int]:
    """Write the run's trials as ``fmt``; returns the file written and its row count."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "parquet":
        _pyarrow()  # fail before reading anything
    rows = trial_rows(run_dir, with_text)
    target = out if out is not None else Path(run_dir) / f"trials.{fmt}"
    if target.is_dir():
        raise UsageError(f"--out {target} is a directory; give a file name, e.g. trials.{fmt}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    (write_csv if fmt == "csv" else write_parquet)(rows, target)
    return target, len(rows)
