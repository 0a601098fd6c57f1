"""``devicelab compare RUN_A RUN_B``: per key (RUN_KEY: model, quant, engine, variant, task,
L) and field of FIELDS, the medians of A and B, the change, whether it is better or worse, and
a one-sided Mann-Whitney p-value (:func:`devicelab._gates.mann_whitney_greater`, in the
direction of the observed change). Beside each median, its spread (p25, p75 and CV, as in the
summary: :func:`devicelab._metrics.spread`), and whether the cell is unstable in that run (the
CV of a median field above the run's ``[scenario] max_cv``, or a noisy trial in the cell), and
how many trials of the key were noisy on each side.

``--by KEYS`` compares by record keys (``engine``, ``variant``, ``doc_id``, ...). Within one
run (:func:`compare_by`): the values of KEYS split its trials into sides, A is the side met
first in the run (its first [[models]] entry) or the one ``--base`` names, and every other side
is B against it, cell by cell (RUN_KEY without KEYS): the app-versus-CLI gap of one model in
one run. Across two runs: KEYS are added to what cells are matched by.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _record
from ._errors import UsageError
from ._gates import DEFAULT_ALPHA, MIN_VALUES, mann_whitney_greater
from ._metrics import DEFAULT_MAX_CV, Spread, instability, spread
from ._noise import noisy_count
from ._record import RUN_KEY, TrialRecord, cell_sort_key, hidden_keys, higher_is_better
from ._rundir import RunData
from ._table import Column, Table, key_columns

Key = tuple[Any, ...]  # the values of RUN_KEY (or of the keys compared by)


@dataclass
class CompareRow:
    cell: dict[str, Any]  # RUN_KEY (or the keys compared by) -> value
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
    # With --by within one run: the values of the by-keys on each side ("llama.cpp", "app").
    a: str = ""
    b: str = ""
    # The spread behind each median (inclusive quartiles; CV = sample stdev / mean, in %).
    p25_a: float | None = None
    p75_a: float | None = None
    cv_pct_a: float | None = None
    p25_b: float | None = None
    p75_b: float | None = None
    cv_pct_b: float | None = None
    # Why this metric of the cell is unstable in A and in B (empty: it is not).
    unstable_a: list[str] = field(default_factory=list)
    unstable_b: list[str] = field(default_factory=list)
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
        if not (self.a or self.b):
            del data["a"], data["b"]
        return {**data.pop("cell"), **data}


def compared_fields(*runs: RunData) -> list[str]:
    """The fields of :data:`FIELDS` compared trial by trial that some measured trial of
    ``runs`` reports (a host without sensors has no temperature row)."""
    return [
        f.name
        for f in _record.FIELDS
        if f.per_trial and any(r.value(f.name) is not None for run in runs for r in run.measured)
    ]


def one_sided_fields(a: RunData, b: RunData) -> str:
    """A sentence naming the fields that one run measured and the other has no value of
    (an older run, made before devicelab recorded them: per-token timings), "" if none."""

    def has(run: RunData, name: str) -> bool:
        return any(r.value(name) is not None for r in run.measured)

    parts = []
    for side, run, other in (("A", a, b), ("B", b, a)):
        only = [
            f.name
            for f in _record.FIELDS
            if f.per_trial and has(run, f.name) and not has(other, f.name)
        ]
        if only:
            parts.append(
                f"{', '.join(only)}: measured in {side} only (the other run has no value: "
                "made before devicelab recorded them, or its engine could not measure them), "
                "so not compared"
            )
    return "; ".join(parts)


def _values(
    records: list[TrialRecord], metrics: list[str], key: Sequence[str] = RUN_KEY
) -> dict[Key, dict[str, list[float]]]:
    cells: dict[Key, dict[str, list[float]]] = {}
    for r in records:
        cell = cells.setdefault(r.cell(key), {m: [] for m in metrics})
        for m in metrics:
            v = r.value(m)
            if v is not None:
                cell[m].append(v)
    return cells


def _noisy(records: list[TrialRecord], key: Sequence[str] = RUN_KEY) -> dict[Key, int]:
    cells: dict[Key, list[TrialRecord]] = {}
    for r in records:
        cells.setdefault(r.cell(key), []).append(r)
    return {key: noisy_count(recs) for key, recs in cells.items()}


def compare_metric(
    key: Key,
    metric: str,
    a: list[float],
    b: list[float],
    alpha: float = DEFAULT_ALPHA,
    names: Sequence[str] = RUN_KEY,
    *,
    noisy: tuple[int, int] = (0, 0),
    max_cv: tuple[float, float] = (DEFAULT_MAX_CV, DEFAULT_MAX_CV),
) -> CompareRow:
    """``metric`` of one key in runs A and B; ``noisy``: the key's noisy trials in A and B,
    ``max_cv``: each run's threshold of an unstable cell."""
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
    sa, sb = spread(a), spread(b)
    return CompareRow(
        dict(zip(names, key, strict=True)),
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
        p25_a=None if sa is None else sa.p25,
        p75_a=None if sa is None else sa.p75,
        cv_pct_a=None if sa is None else sa.cv_pct,
        p25_b=None if sb is None else sb.p25,
        p75_b=None if sb is None else sb.p75,
        cv_pct_b=None if sb is None else sb.cv_pct,
        unstable_a=_unstable(metric, sa, noisy[0], max_cv[0]),
        unstable_b=_unstable(metric, sb, noisy[1], max_cv[1]),
        noisy_a=noisy[0],
        noisy_b=noisy[1],
    )


def _unstable(metric: str, found: Spread | None, noisy: int, max_cv: float) -> list[str]:
    # A side with no values has nothing to be unstable about.
    return [] if found is None else instability({metric: found}, noisy, max_cv)


def compare_runs(
    a: RunData, b: RunData, alpha: float = DEFAULT_ALPHA, by: Sequence[str] = ()
) -> list[CompareRow]:
    """A row per key present in either run and per field of :func:`compared_fields`; cells
    matched by RUN_KEY and the record keys ``by``."""
    check_keys(by, a, b)
    key = (*RUN_KEY, *(k for k in by if k not in RUN_KEY))
    metrics = compared_fields(a, b)
    return _rows(
        _Side(a.measured, metrics, key, a.max_cv),
        _Side(b.measured, metrics, key, b.max_cv),
        metrics,
        alpha,
        key,
    )


class _Side:
    """One side of a comparison: its values and noisy trials per cell, and its max_cv."""

    values: dict[Key, dict[str, list[float]]]
    noisy: dict[Key, int]
    max_cv: float

    def __init__(
        self, records: list[TrialRecord], metrics: list[str], key: Sequence[str], max_cv: float
    ) -> None:
        self.values = _values(records, metrics, key)
        self.noisy = _noisy(records, key)
        self.max_cv = max_cv


def _rows(
    sa: _Side,
    sb: _Side,
    metrics: list[str],
    alpha: float,
    names: Sequence[str],
    sides: tuple[str, str] = ("", ""),
) -> list[CompareRow]:
    rows = []
    for key in sorted(set(sa.values) | set(sb.values), key=cell_sort_key):
        for m in metrics:
            row = compare_metric(
                key,
                m,
                sa.values.get(key, {}).get(m, []),
                sb.values.get(key, {}).get(m, []),
                alpha,
                names,
                noisy=(sa.noisy.get(key, 0), sb.noisy.get(key, 0)),
                max_cv=(sa.max_cv, sb.max_cv),
            )
            row.a, row.b = sides
            rows.append(row)
    return rows


def check_keys(by: Sequence[str], *runs: RunData) -> None:
    """A :class:`UsageError` unless every name of ``by`` is a key of the runs' records."""
    for name in by:
        if not any(r.has_key(name) for run in runs for r in run.measured):
            raise UsageError(
                f"--by {name}: no measured trial has the record key {name!r}. Use record keys "
                f"such as {', '.join(k for k in RUN_KEY)}, doc_id or device."
            )


def side_label(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def compare_by(
    run: RunData, by: Sequence[str], base: str | None = None, alpha: float = DEFAULT_ALPHA
) -> list[CompareRow]:
    """Within ``run``: each side (the values of the record keys ``by``) against side A, the
    first met in the run or the one whose label (values joined by commas) is ``base``, cell
    by cell (RUN_KEY without ``by``) and field by field."""
    if not by:
        raise UsageError("comparing within one run needs --by KEYS, e.g. --by engine.")
    check_keys(by, run)
    key = tuple(k for k in RUN_KEY if k not in by)
    sides: dict[str, list[TrialRecord]] = {}
    for r in run.measured:
        sides.setdefault(side_label(r.cell(by)), []).append(r)
    if len(sides) < 2:
        raise UsageError(
            f"{run.path}: every measured trial has {'/'.join(by)} = {', '.join(sides) or '-'}; "
            "comparing by it needs two or more values (or give a second run)."
        )
    if base is None:
        base = next(iter(sides))
    elif base not in sides:
        raise UsageError(
            f"--base {base!r}: no measured trial has {'/'.join(by)} = {base!r}. Values "
            f"present: {', '.join(sides)}."
        )
    metrics = compared_fields(run)
    side_a = _Side(sides[base], metrics, key, run.max_cv)
    rows = []
    for label, records in sides.items():
        if label != base:
            side_b = _Side(records, metrics, key, run.max_cv)
            rows += _rows(side_a, side_b, metrics, alpha, key, (base, label))
    return rows


def engine_gaps(run: RunData, alpha: float = DEFAULT_ALPHA) -> list[CompareRow]:
    """The gap between engines that ran the same model, quant and variant in ``run`` (an app
    and its engine's CLI): :func:`compare_by` engine, only the cells both sides measured."""
    if len({r.identity.engine for r in run.measured}) < 2:
        return []
    rows = compare_by(run, ("engine",), None, alpha)
    return [r for r in rows if r.n_a and r.n_b]


GAP_TITLE = "Engine gap: B against A per cell (medians; one-sided Mann-Whitney U as in gates)"


def gap_table(rows: Sequence[CompareRow], alpha: float = DEFAULT_ALPHA) -> Table | None:
    """:func:`engine_gaps` rows as one table (the run's summary and the report show it);
    significant rows marked. ``None`` when there are none."""
    if not rows:
        return None
    names = list(rows[0].cell)
    hide = hidden_keys([tuple(r.cell.values()) for r in rows], names)
    names = [k for k in names if k not in hide]
    cells = [[r.cell[k] for k in names] for r in rows]
    columns = (
        *key_columns(names, cells),
        Column("metric", "left"),
        Column("A", "left"),
        Column("B", "left"),
        *(Column(c) for c in ("n A/B", "median A", "median B", "gap %", "p")),
        Column("B is", "left"),
    )
    body = []
    for r, cell in zip(rows, cells, strict=True):
        digits = _record.FIELD_BY_NAME[r.metric].digits if r.metric in _record.FIELD_BY_NAME else 3
        p = "-" if r.p_value is None else f"{r.p_value:.3g}"
        p += f" ({r.note})" if r.note else " *" if r.significant else ""
        body.append(
            (
                *(str(v) or "-" for v in cell),
                r.metric,
                r.a,
                r.b,
                f"{r.n_a}/{r.n_b}",
                "-" if r.median_a is None else f"{r.median_a:.{digits}f}",
                "-" if r.median_b is None else f"{r.median_b:.{digits}f}",
                "-" if r.delta_pct is None else f"{r.delta_pct:+.1f}",
                p,
                r.verdict,
            )
        )
    title = f"{GAP_TITLE}; * p < {alpha:g}"
    return Table(title, columns, tuple(body), tuple(r.significant for r in rows))
