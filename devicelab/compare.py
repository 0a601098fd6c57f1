"""``devicelab compare RUN_A RUN_B``: per key (model, quant, task, L) and metric, the medians
of A and B, the change, whether it is better or worse, and a one-sided Mann-Whitney p-value
(:func:`devicelab.gates.mann_whitney_greater`, in the direction of the observed change).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from .gates import DEFAULT_ALPHA, MIN_VALUES, mann_whitney_greater
from .runs import Run, higher_is_better, metric_value

COMPARE_METRICS = ("itps", "otps", "ttft_s", "runtime_s", "peak_mem_mb")
Key = tuple[Any, Any, Any, Any]  # model, quant, task, context_tokens


@dataclass
class CompareRow:
    model: Any
    quant: Any
    task: Any
    context_tokens: Any
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

    @property
    def key(self) -> Key:
        return (self.model, self.quant, self.task, self.context_tokens)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _values(run: Run) -> dict[Key, dict[str, list[float]]]:
    cells: dict[Key, dict[str, list[float]]] = {}
    for r in run.records:
        key = (r.get("model"), r.get("quant"), r.get("task"), r.get("context_tokens"))
        cell = cells.setdefault(key, {m: [] for m in COMPARE_METRICS})
        for m in COMPARE_METRICS:
            v = metric_value(r, m)
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
        *key,
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


def compare_runs(a: Run, b: Run, alpha: float = DEFAULT_ALPHA) -> list[CompareRow]:
    """A row per key present in either run and per metric of :data:`COMPARE_METRICS`."""
    va, vb = _values(a), _values(b)
    keys = sorted(
        set(va) | set(vb),
        key=lambda k: (*(str(x) for x in k[:3]), k[3] if isinstance(k[3], int) else -1),
    )
    rows = []
    for key in keys:
        for m in COMPARE_METRICS:
            rows.append(
                compare_metric(
                    key, m, va.get(key, {}).get(m, []), vb.get(key, {}).get(m, []), alpha
                )
            )
    return rows
