"""One table model for the summary rows, rendered by rich (the CLI) and as HTML (the report).

The tables are built once from :func:`devicelab._metrics.summarize`'s rows: the columns come
from :data:`~devicelab._record.CELL_KEY` and :data:`~devicelab._record.FIELDS`, so a field
added there is a column in the terminal and in the report alike.

A median cell reads ``62.1 ±4.2%``: the median and the cell's CV (sample stdev / mean), the
familiar "mean ± sd" as a share; with ``iqr`` (the report) also the interquartile range,
``62.1 [60.3–63.0] ±4.2%``. A max cell (peak memory) is the maximum alone. Unstable rows
(:func:`devicelab._metrics.instability`) are marked and say why in an ``unstable`` column.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import _record
from ._catalogue import model_title
from ._metrics import has_spread
from ._record import CELL_KEY, Field, hidden_keys, key_title

if TYPE_CHECKING:
    from rich.table import Table as RichTable

Align = Literal["left", "right"]

SUMMARY_TITLE = "Medians ±CV over measured trials (warm-ups left out)"
SUMMARY_TITLE_IQR = "Medians [p25–p75] ±CV over measured trials (warm-ups left out)"
QUALITY_TITLE = "Quality: mean of each metric over measured trials"
QUALITY_DIGITS = 3
STOPPING_TITLE = "Adaptive repetitions: why each cell stopped"


@dataclass(frozen=True)
class Column:
    title: str
    align: Align = "right"


@dataclass(frozen=True)
class Table:
    """Column titles and alignment, rows of formatted cells, and rows marked for attention."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    marked: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row of {len(row)} cells in a table of {self.columns}")


def _show_device(rows: Sequence[Mapping[str, Any]], device: bool | None) -> bool:
    # A run spread over several phones (an executor such as ray) has a row per device.
    return device if device is not None else len({r.get("device") for r in rows}) > 1


def key_columns(key: Sequence[str], cells: Sequence[Sequence[Any]]) -> list[Column]:
    """A column per name of ``key`` (a cell key): numbers right, text left."""
    return [
        Column(
            key_title(k),
            "right" if cells and all(isinstance(c[i], int | float) for c in cells) else "left",
        )
        for i, k in enumerate(key)
    ]


def _cells(
    rows: Sequence[Mapping[str, Any]], device: bool | None
) -> tuple[list[str], list[Column]]:
    hide = hidden_keys([[r.get(k, "") for k in CELL_KEY] for r in rows], CELL_KEY)
    key = [k for k in CELL_KEY if (k != "device" or _show_device(rows, device)) and k not in hide]
    return key, key_columns(key, [[r.get(k) for k in key] for r in rows])


def key_cell(row: Mapping[str, Any], key: str) -> str:
    """A key's cell: the model with its size where the row knows it ("gemma-3-270m (268M,
    253 MB)"), so a table across models shows what is compared; any other key as it is."""
    if key == "model":
        return model_title(str(row["model"]), row.get("model_params"), row.get("model_size_bytes"))
    return str(row[key]) or "-"


def field_cell(f: Field, row: Mapping[str, Any], *, iqr: bool = False) -> str:
    """``f``'s summary in ``row``: ``62.1 ±4.2%`` (median and CV), with ``iqr`` also
    ``[60.3–63.0]``; the bare value for a max field, or where the spread is unknown."""
    text = f.format(row.get(f.name))
    found = (row.get("spread") or {}).get(f.name) if has_spread(f) else None
    if row.get(f.name) is None or not found:
        return text
    if iqr:
        text += f" [{f.format(found['p25'])}–{f.format(found['p75'])}]"
    if found.get("cv_pct") is not None:
        text += f" ±{found['cv_pct']:.1f}%"
    return text


def summary_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    device: bool | None = None,
    throttle: bool = False,
    iqr: bool = False,
    terminal: bool = False,
) -> Table:
    """The summary rows as a table: the cell, ``n`` and each field of :data:`FIELDS` that
    some row has a value for (a host without temperature sensors shows no temperature
    column), each median with its CV (and with ``iqr`` its p25–p75), and with ``throttle``
    the throttled trials; the noisy trials (``noisy``) when any row has some. When a row is
    unstable, an ``unstable`` column says why; unstable
    rows, and with ``throttle`` rows with throttled trials, are marked.
    ``device``: show the device column (default: when the rows span several devices).
    ``terminal``: only the fields a terminal shows (``Field.terminal``)."""
    key, key_cols = _cells(rows, device)
    fields = [
        f
        for f in _record.FIELDS
        if (f.terminal or not terminal) and any(r.get(f.name) is not None for r in rows)
    ]
    unstable = any(r.get("unstable") for r in rows)
    columns = [*key_cols, Column("n"), *(Column(f.header) for f in fields)]
    if throttle:
        columns.append(Column("throttled"))
    noisy = any(r.get("noisy") for r in rows)
    if noisy:
        columns.append(Column("noisy"))
    if unstable:
        columns.append(Column("unstable", "left"))
    body = []
    for r in rows:
        cells = [key_cell(r, k) for k in key] + [str(r["n"])]
        cells += [field_cell(f, r, iqr=iqr) for f in fields]
        if throttle:
            known = r.get("throttle_known", 0)
            cells.append(f"{r.get('throttled', 0)}/{known}" if known else "unknown")
        if noisy:
            cells.append(f"{r.get('noisy', 0)}/{r['n']}")
        if unstable:
            cells.append(", ".join(r.get("unstable_reasons") or ()) or "-")
        body.append(tuple(cells))
    marked = tuple(
        bool(r.get("unstable") or (throttle and r.get("throttled")) or r.get("noisy")) for r in rows
    )
    return Table(SUMMARY_TITLE_IQR if iqr else SUMMARY_TITLE, tuple(columns), tuple(body), marked)


def quality_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({str(name) for r in rows for name in r.get("quality") or {}})


def quality_table(rows: Sequence[Mapping[str, Any]], *, device: bool | None = None) -> Table | None:
    """The mean of each quality metric per cell; ``None`` when no row has quality."""
    names = quality_names(rows)
    if not names:
        return None
    key, key_cols = _cells(rows, device)
    body = []
    for r in rows:
        means = r.get("quality") or {}
        cells = [key_cell(r, k) for k in key]
        cells += ["-" if means.get(n) is None else f"{means[n]:.{QUALITY_DIGITS}f}" for n in names]
        body.append(tuple(cells))
    columns = (*key_cols, *(Column(n) for n in names))
    return Table(QUALITY_TITLE, columns, tuple(body))


def stopping_table(
    rows: Sequence[Mapping[str, Any]], *, device: bool | None = None
) -> Table | None:
    """Why each cell stopped repeating (``repetitions = "auto"``); ``None`` for a run of
    fixed repetitions, whose rows have no ``stopped``."""
    if not any(r.get("stopped") for r in rows):
        return None
    key, key_cols = _cells(rows, device)
    body = tuple(
        (*(key_cell(r, k) for k in key), str(r["n"]), str(r.get("stopped") or "-")) for r in rows
    )
    return Table(STOPPING_TITLE, (*key_cols, Column("n"), Column("stopped", "left")), body)


MAX_WORD = 32  # the widest word a terminal column keeps whole


def to_rich(table: Table) -> RichTable:
    from rich.table import Table as RichTable
    from rich.text import Text

    # Text, not a markup string: "[p25–p75]" in a title is ours, not a rich style.
    out = RichTable(title=Text(table.title))
    for i, col in enumerate(table.columns):
        # A narrow terminal wraps cells at spaces; a word (a model name) is never cut short.
        words = [w for row in table.rows if i < len(row) for w in row[i].split()]
        widest = min(max(map(len, words), default=0), MAX_WORD)
        out.add_column(col.title, justify=col.align, min_width=widest or None)
    for i, row in enumerate(table.rows):
        marked = i < len(table.marked) and table.marked[i]
        out.add_row(*row, style="red" if marked else None)
    return out


def to_html(table: Table) -> str:
    """A ``<table>`` whose marked rows have ``class="flag"``. The page's style aligns every
    cell right, as the report has always shown them, so the cells carry no alignment."""
    head = "".join(f"<th>{html.escape(c.title)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cls = ' class="flag"' if i < len(table.marked) and table.marked[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


PREDICTION_TITLE = "Measured against predicted (the device's calibration), error in %"


def prediction_table(
    rows: Sequence[Mapping[str, Any]], *, device: bool | None = None
) -> Table | None:
    """Each predicted field's median, its prediction and the error ((measured - predicted) /
    predicted) per cell; rows outside ``[prediction] band_pct`` marked, with the fields that
    are. ``None`` when no row was predicted (the device has no calibration)."""
    from ._predict import PREDICTED

    shown = [r for r in rows if r.get("predicted")]
    if not shown:
        return None
    key, key_cols = _cells(shown, device)
    fields = [_record.FIELD_BY_NAME[name] for name in PREDICTED]
    columns = [*key_cols, *(Column(f.header) for f in fields), Column("outside band", "left")]
    body = []
    for r in shown:
        predicted, errors = r["predicted"], r.get("prediction_error_pct") or {}
        cells = [key_cell(r, k) for k in key]
        for f in fields:
            err = errors.get(f.name)
            said = f"{f.format(r.get(f.name))} / {f.format(predicted.get(f.name))}"
            cells.append(f"{said} {err:+.0f}%" if err is not None else said)
        outside = r.get("prediction_outside") or []
        cells.append(", ".join(_record.FIELD_BY_NAME[n].label for n in outside) or "-")
        body.append(tuple(cells))
    marked = tuple(bool(r.get("prediction_outside")) for r in shown)
    return Table(PREDICTION_TITLE, tuple(columns), tuple(body), marked)
