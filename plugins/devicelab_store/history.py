"""``devicelab history METRIC``: a metric per cell over the stored runs, with its spread per
run and the change points in the series of run medians (E-divisive means with Apache Otava's
significance test, as in its and MongoDB's performance CI), each named with what changed in
the runs' meta there."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import devicelab
from devicelab import UsageError

from .duck import record_columns
from .store import Store

# Otava's default: a change must be this unlikely under "no change" (t-test over the two
# sides) to be reported; a flat noisy series then shows none.
MAX_PVALUE = 0.001
# Run meta that differs between every two runs, so it never explains a change.
_ALWAYS_DIFFERENT = {"run_id", "created_at"}


@dataclass
class RunPoint:
    run_id: str
    created_at: str | None
    meta: dict[str, Any]
    n: int
    median: float
    q1: float
    q3: float
    change: str | None = None  # set on the first run after a change point


@dataclass
class CellHistory:
    cell: tuple[Any, ...]
    points: list[RunPoint] = field(default_factory=list)


def metric_sql(metric: str) -> str:
    names = [f.name for f in devicelab.FIELDS]
    if metric in names:
        return f't."{metric}"'
    name = metric.removeprefix("quality.")
    # The name goes into the SQL text (a JSON path), so only plain names are taken.
    if metric.startswith("quality.") and re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        path = "$.quality." + json.dumps(metric.removeprefix("quality."))
        return f"TRY_CAST(json_extract_string(t.record, '{path}') AS DOUBLE)"
    raise UsageError(
        f"unknown metric {metric!r}. Use one of {', '.join(names)}, or quality.NAME for a "
        "task's own quality metric."
    )


def change_points(values: list[float]) -> list[int]:
    """Indices where a new level starts in ``values`` (none in a flat series)."""
    if len(values) < 4:
        return []  # too short for the significance test to say anything
    try:
        from otava.analysis import compute_change_points
    except ImportError:
        raise devicelab.MissingDependencyError(
            "change points need Apache Otava: pip install 'devicelab[history]'"
        ) from None
    found, _ = compute_change_points(values, window_len=50, max_pvalue=MAX_PVALUE)
    return sorted(int(cp.index) for cp in found)


def what_changed(before: dict[str, Any], after: dict[str, Any]) -> str:
    keys = sorted((set(before) | set(after)) - _ALWAYS_DIFFERENT - {"provenance"})
    diffs = [
        f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys if before.get(k) != after.get(k)
    ]
    # The builds, model files and hosts, field by field (not two whole nested tables).
    diffs += [
        f"provenance.{k}: {a!r} -> {b!r}"
        for k, a, b in devicelab.provenance_differences(before, after)
    ]
    return "; ".join(diffs) if diffs else "nothing in run meta"


def history(
    store: Store,
    metric: str,
    by: list[str],
    since: str | None = None,
    where: str | None = None,
    only: Collection[tuple[Any, ...]] | None = None,
) -> list[CellHistory]:
    """Per cell (the ``by`` columns), the runs' median and IQR of ``metric`` and the change
    points; ``only``: just these cells (the change points of no other are computed)."""
    columns = record_columns()
    unknown = [b for b in by if b not in columns]
    if unknown:
        raise UsageError(
            f"--by {','.join(unknown)} is not a trial column. Use some of: {', '.join(columns)}."
        )
    value = metric_sql(metric)
    cell = ", ".join(f't."{b}"' for b in by)
    conds = ["t.status = 'ok'", "NOT t.warmup", f"{value} IS NOT NULL"]
    params: list[Any] = []
    if since:
        conds.append("r.created_at >= ?")
        params.append(since)
    if where:
        conds.append(f"({where})")
    sql = (
        f"SELECT {cell + ',' if cell else ''} r.run_id, any_value(r.created_at) AS run_at, "
        f"any_value(r.meta), count(*), quantile_cont({value}, [0.25, 0.5, 0.75]) "
        f"FROM trials t JOIN runs r USING (run_id) WHERE {' AND '.join(conds)} "
        f"GROUP BY ALL ORDER BY {cell + ',' if cell else ''} run_at NULLS FIRST, r.run_id"
    )
    rows = store.query(sql, params).rows
    cells: dict[tuple[Any, ...], CellHistory] = {}
    for row in rows:
        key = tuple(row[: len(by)])
        run_id, created_at, meta, n, (q1, median, q3) = row[len(by) :]
        point = RunPoint(run_id, created_at, json.loads(meta), n, median, q1, q3)
        if only is None or key in only:
            cells.setdefault(key, CellHistory(key)).points.append(point)
    for hist in cells.values():
        medians = [p.median for p in hist.points]
        cuts = change_points(medians)
        bounds = [0, *cuts, len(medians)]
        for k, i in enumerate(cuts):
            # The step is told as the change of level between the segments either side (one
            # run's noise would blur a step read off the two runs next to it).
            before = statistics.fmean(medians[bounds[k] : i])
            after = statistics.fmean(medians[i : bounds[k + 2]])
            change = (after - before) / before if before else 0.0
            meta_change = what_changed(hist.points[i - 1].meta, hist.points[i].meta)
            hist.points[i].change = f"{change:+.1%} ({meta_change})"
    return list(cells.values())
