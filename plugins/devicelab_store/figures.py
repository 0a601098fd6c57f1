"""``devicelab report --history``: the reported run's cells over the stored runs.

One figure per measured field the run reports (``history-<field>.png``): a panel per
model/quant and task, a line per context length, the stored runs on the x axis (oldest
first, labelled by date or id) with each run's median and its IQR as a bar, change points
marked (a triangle pointing the way the level went; hollow while provisional), and the
reported run as a dashed line where the store holds it. Runs marked rejected are left out.
"""

from __future__ import annotations

import io
from typing import Any

import devicelab
from devicelab import CONFIRM_RUNS, MAX_PVALUE, WINDOW, RunData

from .history import CellHistory, change_note, history
from .store import Store

# Change points named under a figure; more are drawn but not listed.
MAX_NAMED = 8


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def history_figures(store: Store, run: RunData) -> list[devicelab.ReportFigure]:
    key = list(devicelab.CELL_KEY)
    cells = {r.cell(key) for r in run.measured}
    if not cells or not store.runs():
        return []
    run_id = run.meta.get("run_id")
    figures = []
    for field in devicelab.FIELDS:
        if not field.per_trial or all(r.value(field.name) is None for r in run.measured):
            continue
        found = history(store, field.name, key, only=cells)
        if not found.cells:
            continue
        png, named = _draw(found.cells, key, field, run_id)
        note = (
            f"Median {field.label} per stored run of each cell of this run (bars: IQR), oldest "
            "to newest; a triangle marks the first run after a change point, pointing the way "
            f"the level went (Apache Otava, p < {MAX_PVALUE:g} per window of {WINDOW} runs; "
            f"hollow: provisional, fewer than {CONFIRM_RUNS} runs after it); the dashed line "
            "is this run."
        )
        if found.left_out:
            note += f" {len(found.left_out)} runs marked rejected are left out."
        if named:
            note += " Change points: " + "; ".join(named[:MAX_NAMED])
            note += f" (and {len(named) - MAX_NAMED} more)." if len(named) > MAX_NAMED else "."
        figures.append(
            devicelab.ReportFigure(
                f"history-{field.name}.png", f"History: {field.label} over runs", png, note
            )
        )
    return figures


def _draw(
    found: list[CellHistory], key: list[str], field: devicelab.Field, run_id: Any
) -> tuple[bytes, list[str]]:
    """The figure, and each change point in words."""
    plt = _pyplot()
    # A panel per cell key without the context length; a line per context length.
    line_key = "context_tokens"
    panel_of = [k for k in key if k != line_key]
    panels: dict[tuple[Any, ...], list[CellHistory]] = {}
    for cell in found:
        values = dict(zip(key, cell.cell, strict=True))
        panels.setdefault(tuple(values[k] for k in panel_of), []).append(cell)
    order = sorted(
        {p.run_id: p.created_at or "" for c in found for p in c.points}.items(),
        key=lambda kv: (kv[1], kv[0]),
    )
    x_of = {rid: i for i, (rid, _) in enumerate(order)}
    # A run by its date where it has one (a day's runs share it: then by id), else its id.
    dates = [created[:10] for _, created in order]
    ticks = [
        dates[i] if dates[i] and dates.count(dates[i]) == 1 else rid
        for i, (rid, _) in enumerate(order)
    ]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    named = []
    ordered = sorted(panels.items(), key=lambda kv: _order(kv[0]))
    for ax, (panel, cells) in zip(axes.flat, ordered, strict=False):
        # An empty key (no variant) is left out of the title, not shown as "a//b".
        title = "/".join(str(v) for v in panel if v not in ("", None))
        for cell in sorted(cells, key=lambda c: _order(c.cell)):
            values = dict(zip(key, cell.cell, strict=True))
            xs = [x_of[p.run_id] for p in cell.points]
            med = [p.median for p in cell.points]
            err = [[p.median - p.q1 for p in cell.points], [p.q3 - p.median for p in cell.points]]
            label = f"L={values.get(line_key)}"
            lines = ax.errorbar(xs, med, yerr=err, marker="o", ms=3, lw=1, capsize=2, label=label)
            color = lines[0].get_color()
            for p in cell.points:
                if p.change:
                    marker = "^" if (p.step or 0) > 0 else "v"
                    face = "none" if p.to_confirm else color
                    ax.plot(x_of[p.run_id], p.median, marker, ms=9, color=color, mfc=face)
                    named.append(f"{title} {label} at {p.run_id}: {change_note(p)}")
        if run_id in x_of:
            ax.axvline(x_of[run_id], ls="--", color="gray", lw=1)
        ax.set_title(title, fontsize=8)
        _run_axis(ax, ticks)
        ax.set_ylabel(field.title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(plt, fig), named


def _run_axis(ax: Any, ticks: list[str]) -> None:
    """Whole runs on the x axis, a few of them labelled."""
    from matplotlib.ticker import FixedLocator

    step = max(1, -(-len(ticks) // 6))
    at = list(range(0, len(ticks), step))
    ax.xaxis.set_major_locator(FixedLocator(at))
    ax.set_xticklabels([ticks[i] for i in at], rotation=30, ha="right", fontsize=6)
    ax.set_xlabel("stored run (oldest first)")


def _order(values: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """Numbers in numeric order (L=200 before L=1000), anything else as text."""
    return tuple(
        (0, v) if isinstance(v, int | float) and not isinstance(v, bool) else (1, str(v))
        for v in values
    )
