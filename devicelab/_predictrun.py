"""The performance model (devicelab._predict) applied to a plan and to a run's summary.

- :func:`plan_predictions`: every cell of a resolved plan predicted before anything runs
  (``devicelab predict``), with the cells that will not fit in memory, in the context window
  or in ``[scenario] timeout_s`` marked.
- :func:`with_predictions`: the summary rows of a run with ``predicted`` (per field),
  ``prediction_error_pct`` and ``prediction_outside`` (the fields off by more than
  ``[prediction] band_pct``), as summary.json, the table and the report show them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ModelError
from ._predict import (
    MB,
    PREDICTED,
    Calibration,
    ModelShape,
    Prediction,
    error_pct,
    model_shape,
    predict,
)
from ._record import CELL_KEY, FIELD_BY_NAME, TrialRecord

DEFAULT_N_CTX, DEFAULT_N_BATCH = 2048, 512


def engine_sizes(options: Any) -> tuple[int, int]:
    """(n_ctx, n_batch) of a model entry's engine options, llama.cpp's defaults where the
    engine has no such option."""
    n_ctx = getattr(options, "n_ctx", None)
    n_batch = getattr(options, "n_batch", None)
    return (
        n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else DEFAULT_N_CTX,
        n_batch if isinstance(n_batch, int) and n_batch > 0 else DEFAULT_N_BATCH,
    )


@dataclass(frozen=True)
class ModelKey:
    model: str
    quant: str
    engine: str
    variant: str


def shapes(models: Iterable[Any]) -> dict[ModelKey, tuple[ModelShape | str, int, int]]:
    """Each resolved model's shape (or why it has none: no file, not a GGUF, missing
    metadata) with its engine's n_ctx and n_batch."""
    from ._api import is_gguf

    out: dict[ModelKey, tuple[ModelShape | str, int, int]] = {}
    for m in models:
        key = ModelKey(m.spec.name, m.spec.quant, m.spec.engine, m.variant)
        n_ctx, n_batch = engine_sizes(m.options)
        path = m.spec.path
        shape: ModelShape | str
        if getattr(m, "make", None) is not None:
            shape = (
                f"not made yet: `devicelab quantize {m.make.source.name} --to {m.make.qtype}` "
                "makes the file the prediction is read from"
            )
        elif path is None:
            shape = "no model file (the engine carries it): nothing to read its shape from"
        elif not Path(path).is_file():
            shape = f"{path} is not there yet (it is made on the first run)"
        elif not is_gguf(Path(path)):
            shape = f"{path} is not a GGUF file: the model reads its shape from GGUF metadata"
        else:
            try:
                shape = model_shape(Path(path))
            except ModelError as exc:
                shape = str(exc)
        out[key] = (shape, n_ctx, n_batch)
    return out


def memory_limit_mb(profile: Mapping[str, Any], device_kind: str) -> float | None:
    """The device's RAM in MiB: the profile's ``[device.facts] ram_gb``, else the host's own
    when the device is the host; ``None`` when unknown."""
    facts = profile.get("facts") if isinstance(profile, Mapping) else None
    ram = facts.get("ram_gb") if isinstance(facts, Mapping) else None
    if isinstance(ram, int | float) and not isinstance(ram, bool) and ram > 0:
        return float(ram) * 1e9 / MB
    if device_kind == "host":
        import psutil

        return float(psutil.virtual_memory().total) / MB
    return None


@dataclass(frozen=True)
class PlannedCell:
    key: ModelKey
    context_tokens: int
    output_tokens: int
    prediction: Prediction | None
    marks: tuple[str, ...]  # why the cell will not run as asked
    missing: str = ""  # why there is no prediction


def plan_predictions(plan: Any, cal: Calibration) -> list[PlannedCell]:
    """Each model x L of ``plan`` predicted at a prompt of L tokens and max_output_tokens out
    (the longest a trial may take), with its marks: over the device's memory, past the
    context window, past the trial timeout."""
    sc = plan.scenario
    limit = memory_limit_mb(plan.device_profile, plan.device_type.engine_kind)
    out_tokens = sc.max_output_tokens
    cells = []
    for key, (shape, n_ctx, n_batch) in shapes(plan.models).items():
        for length in sc.lengths:
            if isinstance(shape, str):
                cells.append(PlannedCell(key, length, out_tokens, None, (), shape))
                continue
            p = predict(shape, cal, length, out_tokens, n_ctx, n_batch)
            marks = []
            if limit is not None and p.peak_mem_mb > limit:
                marks.append(f"memory: {p.peak_mem_mb:.0f} MB > {limit:.0f} MB")
            if length + out_tokens > n_ctx:
                marks.append(f"context: {length}+{out_tokens} > n_ctx {n_ctx}")
            if p.runtime_s > sc.timeout_s:
                marks.append(f"time: {p.runtime_s:.0f} s > timeout_s {sc.timeout_s:g}")
            cells.append(PlannedCell(key, length, out_tokens, p, tuple(marks)))
    return cells


def _cell_tokens(records: Iterable[TrialRecord]) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Per cell, the median prompt and output token counts of its measured ok trials: what
    the cell was given and how long it ran on, not how fast (the speeds are not looked at)."""
    groups: dict[tuple[Any, ...], list[TrialRecord]] = {}
    for r in records:
        if r.ok and r.measured:
            groups.setdefault(r.cell(), []).append(r)
    out = {}
    for cell, recs in groups.items():
        ins = [r.measures.input_tokens for r in recs if r.measures.input_tokens]
        outs = [r.measures.output_tokens for r in recs if r.measures.output_tokens]
        if ins and outs:
            out[cell] = (round(statistics.median(ins)), round(statistics.median(outs)))
    return out


def with_predictions(
    rows: Sequence[Mapping[str, Any]],
    records: Iterable[TrialRecord],
    model_shapes: Mapping[ModelKey, tuple[ModelShape | str, int, int]],
    cal: Calibration,
    band_pct: float,
) -> list[dict[str, Any]]:
    """``rows`` with each predictable cell's ``predicted``, ``prediction_error_pct`` and
    ``prediction_outside`` (fields whose |error| is above ``band_pct``)."""
    tokens = _cell_tokens(records)
    out = []
    for row in rows:
        row = dict(row)
        key = ModelKey(row["model"], row["quant"], row["engine"], row["variant"])
        found = model_shapes.get(key)
        cell = tuple(row[k] for k in CELL_KEY)
        if found is None or isinstance(found[0], str) or cell not in tokens:
            out.append(row)
            continue
        shape, n_ctx, n_batch = found
        assert not isinstance(shape, str)
        n_in, n_out = tokens[cell]
        p = predict(shape, cal, n_in, n_out, n_ctx, n_batch).to_json()
        errors = {f: error_pct(row.get(f), p[f]) for f in PREDICTED}
        row["predicted"] = p
        row["prediction_error_pct"] = errors
        row["prediction_outside"] = [
            f for f, e in errors.items() if e is not None and abs(e) > band_pct
        ]
        out.append(row)
    return out


def merge_saved(rows: Sequence[Mapping[str, Any]], summary: Path) -> list[dict[str, Any]]:
    """``rows`` (summarised again from the trials, as the report does) with the prediction
    fields the run wrote to ``summary`` (summary.json), matched by cell."""
    try:
        saved = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return [dict(r) for r in rows]
    by_cell = {
        tuple(s.get(k) for k in CELL_KEY): s
        for s in saved
        if isinstance(s, Mapping) and isinstance(s.get("predicted"), Mapping)
    }
    out = []
    for row in rows:
        row = dict(row)
        s = by_cell.get(tuple(row.get(k) for k in CELL_KEY))
        if s is not None:
            for k in ("predicted", "prediction_error_pct", "prediction_outside"):
                row[k] = s.get(k)
        out.append(row)
    return out


def outside_note(rows: Sequence[Mapping[str, Any]], band_pct: float) -> str | None:
    """The run's line on its predictions: the cells outside the band, named, or that every
    predicted cell is inside it; ``None`` when nothing was predicted."""
    from ._record import cell_title, hidden_keys

    predicted = [r for r in rows if r.get("predicted")]
    if not predicted:
        return None
    cells = [tuple(r[k] for k in CELL_KEY) for r in predicted]
    hide = hidden_keys(cells, CELL_KEY)
    off = []
    for r, cell in zip(predicted, cells, strict=True):
        if r.get("prediction_outside"):
            errs = r.get("prediction_error_pct") or {}
            what = ", ".join(
                f"{FIELD_BY_NAME[f].label} {errs[f]:+.0f}%" for f in r["prediction_outside"]
            )
            off.append(f"{cell_title(cell, CELL_KEY, hide)} ({what})")
    if not off:
        return (
            f"all {len(predicted)} predicted cells are within ±{band_pct:g}% of their "
            "prediction ([prediction] band_pct)."
        )
    return (
        f"{len(off)} of {len(predicted)} cells are outside ±{band_pct:g}% of their prediction "
        f"([prediction] band_pct): {'; '.join(off)}. A throttled device, a regressed build or "
        "a slow fallback path shows here; so does a stale calibration (`devicelab calibrate "
        "DEVICE` again)."
    )
