"""``devicelab history METRIC``: a metric per cell over the stored runs, with its spread per
run and the change points in the series of run medians (E-divisive means with Apache Otava's
significance test, as in its and MongoDB's performance CI), each named with what changed in
the runs' meta there."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import devicelab
from devicelab import UsageError, change_points

from .duck import record_columns
from .store import Store

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
    verdict: str | None = None
    change: str | None = None  # set on the first run after a change point
    step: float | None = None  # there: the change of level, as a share (-0.1: 10 % lower)
    to_confirm: int = 0  # for a provisional change point: the runs that would confirm it


@dataclass
class CellHistory:
    cell: tuple[Any, ...]
    points: list[RunPoint] = field(default_factory=list)


@dataclass
class History:
    cells: list[CellHistory]
    left_out: list[str]  # the ids of runs the verdict asked for left out (rejected ones)


# --verdict: which runs a history shows. Rejected runs (a hot phone, a broken build) would
# otherwise move the change points.
VERDICTS: dict[str, Callable[[str | None], bool]] = {
    "not-rejected": lambda v: v != "rejected",
    "accepted": lambda v: v == "accepted",
    "all": lambda v: True,
}


def change_note(point: RunPoint) -> str:
    """A change point in words, provisional ones saying how many runs would confirm them."""
    if point.change is None:
        return ""
    if not point.to_confirm:
        return point.change
    runs = "run" if point.to_confirm == 1 else "runs"
    return f"provisional ({point.to_confirm} more {runs} would confirm it): {point.change}"


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


def what_changed(before: dict[str, Any], after: dict[str, Any], limit: int = 4) -> str:
    """What differs in run.json between two runs: engine options first (``threads: 2 -> 1``),
    then the run's own keys, then the builds, model files and hosts field by field; at most
    ``limit`` of them, and how many more."""
    keys = sorted((set(before) | set(after)) - _ALWAYS_DIFFERENT - {"provenance"})
    options, rest = [], []
    for k, a, b in devicelab.provenance_differences(before, after):
        _, sep, option = k.partition(".options.")
        if sep and k.startswith("models."):
            options.append(f"{option}: {_short(a)} -> {_short(b)}")
        else:
            rest.append(f"provenance.{k}: {_short(a)} -> {_short(b)}")
    diffs = list(dict.fromkeys(options))  # the same option of two models, named once
    diffs += [
        f"{k}: {_short(before.get(k))} -> {_short(after.get(k))}"
        for k in keys
        if before.get(k) != after.get(k)
    ]
    diffs += rest
    if not diffs:
        return "nothing in run meta"
    more = f"; and {len(diffs) - limit} more in run.json" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _short(value: Any) -> str:
    """A value as a label shows it: a long hex digest by its first 12 digits."""
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{20,}", value):
        return repr(value[:12] + "…")
    return repr(value)


def history(
    store: Store,
    metric: str,
    by: list[str],
    since: str | None = None,
    where: str | None = None,
    only: Collection[tuple[Any, ...]] | None = None,
    verdict: str = "not-rejected",
) -> History:
    """Per cell (the ``by`` columns), the runs' median and IQR of ``metric`` and the change
    points; ``only``: just these cells (the change points of no other are computed);
    ``verdict``: which runs count (a key of :data:`VERDICTS`; by default all but rejected)."""
    columns = record_columns()
    unknown = [b for b in by if b not in columns]
    if unknown:
        raise UsageError(
            f"--by {','.join(unknown)} is not a trial column. Use some of: {', '.join(columns)}."
        )
    if verdict not in VERDICTS:
        raise UsageError(f"--verdict is one of {', '.join(VERDICTS)}, not {verdict!r}.")
    keep = VERDICTS[verdict]
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
        f"any_value(r.meta), any_value(r.verdict), count(*), "
        f"quantile_cont({value}, [0.25, 0.5, 0.75]) "
        f"FROM trials t JOIN runs r USING (run_id) WHERE {' AND '.join(conds)} "
        f"GROUP BY ALL ORDER BY {cell + ',' if cell else ''} run_at NULLS FIRST, r.run_id"
    )
    rows = store.query(sql, params).rows
    cells: dict[tuple[Any, ...], CellHistory] = {}
    left_out: dict[str, None] = {}
    for row in rows:
        key = tuple(row[: len(by)])
        run_id, created_at, meta, run_verdict, n, (q1, median, q3) = row[len(by) :]
        if only is not None and key not in only:
            continue
        if not keep(run_verdict):
            left_out[run_id] = None
            continue
        point = RunPoint(run_id, created_at, json.loads(meta), n, median, q1, q3, run_verdict)
        cells.setdefault(key, CellHistory(key)).points.append(point)
    for hist in cells.values():
        medians = [p.median for p in hist.points]
        found = change_points(medians)
        bounds = [0, *(c.index for c in found), len(medians)]
        for k, cp in enumerate(found):
            i = cp.index
            # The step is told as the change of level between the segments either side (one
            # run's noise would blur a step read off the two runs next to it).
            before = statistics.fmean(medians[bounds[k] : i])
            after = statistics.fmean(medians[i : bounds[k + 2]])
            change = (after - before) / before if before else 0.0
            meta_change = what_changed(hist.points[i - 1].meta, hist.points[i].meta)
            point = hist.points[i]
            point.change, point.step = f"{change:+.1%} ({meta_change})", change
            point.to_confirm = cp.to_confirm
    return History(list(cells.values()), list(left_out))
