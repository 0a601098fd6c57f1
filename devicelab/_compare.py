"""``devicelab compare RUN_A RUN_B``: per key (RUN_KEY: model, quant, task, L) and field of
FIELDS, the medians of A and B, the change, whether it is better or worse, and a one-sided
Mann-Whitney p-value (:func:`devicelab._gates.mann_whitney_greater`, in the direction of the
observed change), and how many trials of the key were noisy on each side.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from . import _record
from ._gates import DEFAULT_ALPHA, MIN_VALUES, mann_whitney_greater
from ._record import RUN_KEY, TrialRecord, cell_sort_key, higher_is_better
from ._rundir import RunData

Key = tuple[Any, ...]  # the values of RUN_KEY: model, quant, task, context_tokens


@dataclass
class CompareRow:
    cell: dict[str, Any]  # RUN_KEY -> value
    metric: str
    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    delta: float | None  # median_b - median_a
    delta_pct: float | None  # delta / |median_a| * 100
    verdict: str  # "better", "worse", "same" (B against A), or "-" when a side is empty
    p_value: float | None  # one-sided, in the direction of the verdict ("worse" when same)
    note: str  # "n<5" when a side has fewer than MIN_VALUES values, else ""
    significant: bool  # p < alpha and both sides have at least MIN_VALUES values
    # Measured trials of the key marked noisy (other processes used the CPU) in A and in B.
    noisy_a: int = 0
    noisy_b: int = 0

    def __getattr__(self, name: str) -> Any:
        # row.task, row.context_tokens, ...: the cell's keys read as attributes.
        cell = self.__dict__.get("cell")
        if cell is not None and name in cell:
            return cell[name]
        raise AttributeError(name)

    @property
    def key(self) -> Key:
        return tuple(self.cell.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("cell"), **data}


def compared_fields(*runs: RunData) -> list[str]:
    """The fields of :data:`FIELDS` compared trial by trial that some measured trial of
    ``runs`` reports (a host without sensors has no temperature row)."""
    return [
        f.name
        for f in _record.FIELDS
        if f.per_trial and any(r.value(f.name) is not None for run in runs for r in run.measured)
    ]


def _values(records: list[TrialRecord], metrics: list[str]) -> dict[Key, dict[str, list[float]]]:
    cells: dict[Key, dict[str, list[float]]] = {}
    for r in records:
        cell = cells.setdefault(r.cell(RUN_KEY), {m: [] for m in metrics})
        for m in metrics:
            v = r.value(m)
            if v is not None:
                cell[m].append(v)
    return cells


def compare_metric(
    key: Key, metric: str, a: list[float], b: list[float], alpha: float = DEFAULT_ALPHA
) -> CompareRow:
    med_a = statistics.median(a) if a else None
    med_b = statistics.median(b) if b else None
    delta = pct = p = None
    verdict = "-"
    if med_a is not None and med_b is not None:
        delta = med_b - med_a
        pct = delta / abs(med_a) * 100 if med_a != 0 else None
        higher = higher_is_better(metric)
        verdict = "same" if delta == 0 else "better" if (delta > 0) == higher else "worse"
        # H1: B is worse than A (or better, when the medians moved that way).
        b_larger = (verdict == "better") == higher
        _, p = mann_whitney_greater(b, a) if b_larger else mann_whitney_greater(a, b)
    few = len(a) < MIN_VALUES or len(b) < MIN_VALUES
    return CompareRow(
        dict(zip(RUN_KEY, key, strict=True)),
        metric=metric,
        n_a=len(a),
        n_b=len(b),
        median_a=med_a,
        median_b=med_b,
        delta=delta,
        delta_pct=pct,
        verdict=verdict,
        p_value=p,
        note="n<5" if few else "",
        significant=bool(p is not None and not few and p < alpha),
    )


def _noisy(records: list[TrialRecord]) -> dict[Key, int]:
    counts: dict[Key, int] = {}
    for r in records:
        if r.tries.noisy is True:
            counts[r.cell(RUN_KEY)] = counts.get(r.cell(RUN_KEY), 0) + 1
    return counts


def compare_runs(a: RunData, b: RunData, alpha: float = DEFAULT_ALPHA) -> list[CompareRow]:
    """A row per key present in either run and per field of :func:`compared_fields`, with
    the noisy trials of the key on each side counted."""
    metrics = compared_fields(a, b)
    va, vb = _values(a.measured, metrics), _values(b.measured, metrics)
    na, nb = _noisy(a.measured), _noisy(b.measured)
    rows = []
    for key in sorted(set(va) | set(vb), key=cell_sort_key):
        for m in metrics:
            row = compare_metric(
                key, m, va.get(key, {}).get(m, []), vb.get(key, {}).get(m, []), alpha
            )
            row.noisy_a, row.noisy_b = na.get(key, 0), nb.get(key, 0)
            rows.append(row)
    return rows
