"""``devicelab report``: one self-contained HTML file (figures embedded as base64 PNG) and
the PNG files beside it, from a finished run directory.

Figures: each per-trial field of FIELDS that the run reports against context length (one line
per model/quant, one panel per task; fields sharing a ``figure`` share a file: speed.png holds
ITPS, OTPS, TTFT and runtime, memory.png peak memory), a median field with error bars from
p25 to p75 (a max field, such as peak memory, is its maximum alone); telemetry timelines
(temperature, memory, token rate) with the prefill and decode phases shaded; from the token
times (devicelab._tokenreport), the inter-token latency CDF per model and L and the decode
rate against token position; for a ``[sustained]`` run, each cell's rate against time
(devicelab._sustained). The numbers each
figure draws are in the page too, as JSON (``<script type="application/json"
class="figure-data">``), for readers and tests that want the data rather than the pixels.
Tables: the summary rows (devicelab._metrics.summarize, with the run's ``[scenario] max_cv``)
with each median's p25–p75 and CV, unstable and throttled rows marked, and the mean of each
quality metric, built by devicelab._table as the CLI's are. Only measured trials (warm-ups and
failed trials left out) are used.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _metrics as metrics
from . import _noise as noise
from . import _record
from . import _sustained as sustained
from . import _tokenreport as tokenreport
from ._catalogue import Facts, model_title, run_facts, with_model_facts
from ._compare import engine_gaps, gap_table
from ._errors import MissingDependencyError, UsageError
from ._predictrun import merge_saved
from ._record import STATS, Field, TrialRecord, cell_label, hidden_keys
from ._rundir import SUMMARY, RunData, load_run
from ._table import prediction_table, quality_table, summary_table, to_html

MAX_TIMELINES = 8
STAT_NOUNS = {"median": "Medians", "mean": "Means", "min": "Minima", "max": "Maxima"}
TIMELINE_SERIES = (("temp_c", "temperature (°C)"), ("mem_mb", "memory (MB)"), ("tok_s", "tok/s"))
PHASE_COLORS = {"prefill": "tab:orange", "decode": "tab:green"}


@dataclass
class Figure:
    """One figure of the report (``devicelab.ReportFigure``: plugins add their own through
    the ``devicelab_report_figures`` hook)."""

    name: str  # file name, e.g. "speed.png"
    title: str
    png: bytes
    note: str = ""
    # What the figure draws: field -> task -> model/quant -> points (see :func:`series`).
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Point:
    """One marker of a figure against L: the cell's statistic, and for a median field the
    error bar from p25 to p75 (``None`` for a max field)."""

    length: int
    value: float
    p25: float | None = None
    p75: float | None = None


@dataclass
class Report:
    html_path: Path
    figures: list[Figure]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "devicelab report needs matplotlib; install it with `pip install 'matplotlib>=3.7'` "
            "(it is a dependency of devicelab, so reinstalling devicelab also works)."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _tasks(records: Sequence[TrialRecord]) -> list[str]:
    return sorted({str(r.identity.task) for r in records})


def series(
    records: Iterable[TrialRecord],
    field: Field,
    task: str,
    facts: Mapping[tuple[str, str], Mapping[str, int]] | None = None,
) -> dict[str, list[Point]]:
    """``model/quant`` (with the engine and variant where they tell lines apart; the model
    with its size where ``facts``, :func:`devicelab._catalogue.model_facts`, know it) -> the
    points of one task sorted by L: the field's statistic and, for a median (or mean) field,
    its p25 and p75."""
    records = list(records)
    key = ("model", "quant", "engine", "variant")
    hide = hidden_keys([r.cell(key) for r in records], key)
    cells: dict[tuple[str, int], list[float]] = {}
    for r in records:
        ident = r.identity
        if str(ident.task) != task:
            continue
        v = r.value(field.name)
        if v is None or not isinstance(ident.context_tokens, int):
            continue
        cell = r.cell(key)
        known = (facts or {}).get((ident.model, ident.quant), {})
        if known:
            cell = (model_title(str(ident.model), **_title_args(known)), *cell[1:])
        line = cell_label(cell, key, hide)
        cells.setdefault((line, ident.context_tokens), []).append(v)
    out: dict[str, list[Point]] = {}
    for (line, length), vals in sorted(cells.items()):
        found = metrics.spread(vals) if metrics.has_spread(field) else None
        lo, hi = (None, None) if found is None else (found.p25, found.p75)
        out.setdefault(line, []).append(Point(length, STATS[field.stat](vals), lo, hi))
    return out


def _title_args(known: Mapping[str, int]) -> dict[str, int | None]:
    return {"params": known.get("model_params"), "size_bytes": known.get("model_size_bytes")}


def _draw(ax: Any, line: str, points: Sequence[Point]) -> None:
    xs, ys = [p.length for p in points], [p.value for p in points]
    if all(p.p25 is None or p.p75 is None for p in points):
        ax.plot(xs, ys, marker="o", label=line)
        return
    # Bars from p25 to p75 around the median (inclusive quartiles; the median lies within).
    below = [0.0 if p.p25 is None else max(p.value - p.p25, 0.0) for p in points]
    above = [0.0 if p.p75 is None else max(p.p75 - p.value, 0.0) for p in points]
    ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=line)


def figure_data(
    records: Sequence[TrialRecord], fields: Sequence[Field], facts: Facts | None = None
) -> dict[str, Any]:
    """field -> task -> model/quant -> the points drawn (:func:`series`), as JSON."""
    return {
        f.name: {
            task: {
                line: [vars(p) for p in points]
                for line, points in series(records, f, task, facts).items()
            }
            for task in _tasks(records)
        }
        for f in fields
    }


def against_l_axes(
    records: Sequence[TrialRecord], fields: Sequence[Field], facts: Facts | None = None
) -> Any:
    """The matplotlib figure of ``fields`` against L (a row per field, a column per task)."""
    plt = _pyplot()
    tasks = _tasks(records)
    fig, axes = plt.subplots(
        len(fields), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(fields)), squeeze=False
    )
    for i, field in enumerate(fields):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for line, points in series(records, field, task, facts).items():
                _draw(ax, line, points)
            ax.set_xlabel("context length L (tokens)")
            ax.set_ylabel(field.title)
            ax.set_title(task if i == 0 else "")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_groups(records: Sequence[TrialRecord]) -> dict[str, list[Field]]:
    """Figure name -> the per-trial fields drawn in it (``plotted``), those that some trial
    reports."""
    groups: dict[str, list[Field]] = {}
    for f in _record.FIELDS:
        if f.per_trial and f.plotted and any(r.value(f.name) is not None for r in records):
            groups.setdefault(f.figure or f.name, []).append(f)
    return groups


def pick_timeline_trials(
    records: Sequence[TrialRecord], cap: int = MAX_TIMELINES
) -> tuple[list[TrialRecord], str]:
    """The measured trials of the longest L, at most ``cap`` of them, and a note saying so."""
    lengths = [
        r.identity.context_tokens for r in records if isinstance(r.identity.context_tokens, int)
    ]
    if not lengths:
        return [], "no measured trials"
    longest = max(lengths)
    chosen = [r for r in records if r.identity.context_tokens == longest]
    note = f"measured trials at the longest context length (L={longest})"
    if len(chosen) > cap:
        note += f": the first {cap} of {len(chosen)} shown"
    return chosen[:cap], note


def _phase_spans(samples: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per shaded phase, from its first sample to the sample after its last (time-sorted)."""
    timed = [s for s in samples if isinstance(s.get("t"), int | float)]
    spans: dict[str, tuple[float, float]] = {}
    for i, s in enumerate(timed):
        phase = s.get("phase")
        if phase not in PHASE_COLORS:
            continue
        start = float(s["t"])
        end = float(timed[i + 1]["t"]) if i + 1 < len(timed) else start
        lo, hi = spans.get(str(phase), (start, end))
        spans[str(phase)] = (min(lo, start), max(hi, end))
    return spans


def _timelines(trials: Sequence[TrialRecord], telemetry: Sequence[Mapping[str, Any]]) -> bytes:
    plt = _pyplot()
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for s in telemetry:
        by_trial.setdefault(str(s.get("trial_id")), []).append(s)
    fig, axes = plt.subplots(
        len(trials), len(TIMELINE_SERIES), figsize=(12, 2.4 * len(trials)), squeeze=False
    )
    for i, rec in enumerate(trials):
        samples = sorted(
            (s for s in by_trial.get(str(rec.trial_id), []) if s.get("phase") != "cooldown"),
            key=lambda s: float(s.get("t") or 0.0),
        )
        spans = _phase_spans(samples)
        for j, (key, label) in enumerate(TIMELINE_SERIES):
            ax = axes[i][j]
            points = [
                (float(s["t"]), float(s[key]))
                for s in samples
                if isinstance(s.get(key), int | float) and isinstance(s.get("t"), int | float)
            ]
            for phase, (lo, hi) in spans.items():
                ax.axvspan(lo, hi, color=PHASE_COLORS[phase], alpha=0.15, label=phase)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue", lw=1)
            else:
                ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes)
            ax.set_ylabel(label)
            ax.set_xlabel("t (s since trial start)")
            if j == 0:
                ident = rec.identity
                ax.set_title(
                    f"{ident.model}/{ident.quant} {ident.task} "
                    f"L={ident.context_tokens} rep {ident.repetition}",
                    fontsize=8,
                    loc="left",
                )
            if i == 0 and j == 0 and spans:
                ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>devicelab report: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }} tr.flag td {{ background: #fde2e2; }}
img {{ max-width: 100%; }} .note {{ color: #555; }}
</style></head><body>
<h1>devicelab report: {title}</h1>
<p class="note">{summary}</p>
<h2>Medians</h2>
<p class="note">Medians over measured trials (warm-ups and failed trials left out), each with
[p25–p75] (inclusive quartiles) and ±CV (sample standard deviation over the mean); peak
memory, temperature and load time are maxima, without a spread. "throttled" counts trials the
device reported as throttled (of those where it reported anything); "noisy" (shown when there
are any) counts trials during which other processes used more of the device's CPU than [noise]
max_other_cpu_pct allows ("other CPU" is the highest share seen). Rows with throttled or noisy
trials are marked, and so are unstable rows (a median's CV above max_cv = {max_cv:g}%, or a
noisy trial), with the reason. {stability}</p>
{medians}
{predictions}
{gaps}
<h2>Quality</h2>
{quality}
{figures}
</body></html>
"""


def _figure_json(f: Figure) -> str:
    # "</" would end the <script> early: a model named "</script>" must stay data.
    text = json.dumps(f.data, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<script type="application/json" class="figure-data" '
        f'data-figure="{html.escape(f.name)}">{text}</script>'
    )


def render_html(run: RunData, figures: Sequence[Figure]) -> str:
    rows = with_model_facts(metrics.summarize(run.records, run.max_cv), run_facts(run))
    # The predictions are the run's own (made from the calibration it started with), kept in
    # summary.json; a report made later must not predict again from a newer calibration.
    rows = merge_saved(rows, run.path / SUMMARY)
    forecast = prediction_table(rows, device=True)
    predictions = (
        ""
        if forecast is None
        else '<h2>Predictions</h2><p class="note">Each cell\'s median against what the '
        "device's calibration predicted before the run (measured / predicted, then the error "
        "in %); rows outside [prediction] band_pct are marked. See docs/prediction.md.</p>"
        + to_html(forecast)
    )
    med = (
        to_html(summary_table(rows, device=True, throttle=True, iqr=True))
        if rows
        else "<p>No measured trials finished ok; nothing to summarise.</p>"
    )
    qtable = quality_table(rows)
    if qtable is not None:
        quality = '<p class="note">The mean of each quality metric.</p>' + to_html(qtable)
    else:
        quality = "<p>No quality metrics: no measured trial has a <code>quality</code> value.</p>"
    parts = []
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        note = f'<p class="note">{html.escape(f.note)}</p>' if f.note else ""
        parts.append(
            f"<h2>{html.escape(f.title)}</h2>{note}"
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(f.name)}">'
            + (_figure_json(f) if f.data is not None else "")
        )
    gap = gap_table(engine_gaps(run))
    gaps = (
        ""
        if gap is None
        else '<h2>Engine gap</h2><p class="note">The same model, quant and variant run by '
        "two engines (an app and its engine's CLI): B's median against A's per task and L, "
        "with the one-sided Mann-Whitney U test the gates use; significant rows marked. "
        "<code>devicelab compare RUN --by engine</code> prints it too.</p>" + to_html(gap)
    )
    held = sustained.sustained_table(sustained.run_rows(run))
    if held is not None:
        gaps += f"<h2>{sustained.TITLE}</h2>" + to_html(held)
    n_trials = len(run.measured)
    stability = metrics.unstable_line(rows, run.max_cv) if rows else ""
    summary = f"{run.path}: {n_trials} measured trials."
    for said in (noise.run_note(run.records), tokenreport.run_note(run)):
        if said:
            summary += f" {said}"
    return TEMPLATE.format(
        gaps=gaps,
        title=html.escape(run.path.name or str(run.path)),
        summary=html.escape(summary),
        medians=med,
        predictions=predictions,
        max_cv=run.max_cv,
        stability=html.escape(stability[:1].upper() + stability[1:]),
        quality=quality,
        figures="\n".join(parts),
    )


def make_figures(run: RunData, cap: int = MAX_TIMELINES) -> list[Figure]:
    records = run.measured
    if not records:
        return []
    facts = run_facts(run)
    figures = []
    for name, fields in figure_groups(records).items():
        what = fields[0].label if len(fields) == 1 else name
        stats = sorted({STAT_NOUNS[f.stat] for f in fields})
        bars = (
            " Error bars: p25 to p75 of the trials behind each median."
            if any(metrics.has_spread(f) for f in fields)
            else ""
        )
        figures.append(
            Figure(
                f"{name}.png",
                f"{what[:1].upper()}{what[1:]} against context length",
                _png(against_l_axes(records, fields, facts)),
                f"{' and '.join(stats)} per model/quant, task and L; one line per model/quant, "
                f"one panel per task.{bars}",
                figure_data(records, fields, facts),
            )
        )
    figures.extend(tokenreport.figures(run, _pyplot(), _png, Figure))
    figures.extend(sustained.figures(run, _pyplot(), _png, Figure))
    trials, note = pick_timeline_trials(records, cap)
    telemetry = run.telemetry if trials else []
    if telemetry:
        figures.append(
            Figure(
                "timelines.png",
                "Telemetry timelines",
                _timelines(trials, telemetry),
                f"{note}; prefill (orange) and decode (green) shaded.",
            )
        )
    return figures


def build_report(
    run_dir: Path,
    out_dir: Path | None = None,
    cap: int = MAX_TIMELINES,
    more: Callable[[RunData], Sequence[Figure]] | None = None,
) -> Report:
    """Write ``report.html`` and the PNG figures into ``out_dir`` (default RUN_DIR/report);
    ``more`` gives figures to add after the report's own (the plugins' ones)."""
    run = load_run(run_dir)
    out = out_dir if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = make_figures(run, cap)
    if more is not None:
        taken = {f.name for f in figures}
        for f in more(run):
            if f.name in taken:
                raise UsageError(
                    f"two report figures are named {f.name!r}; the plugin that adds the "
                    "second must name it otherwise."
                )
            taken.add(f.name)
            figures.append(f)
    for f in figures:
        (out / f.name).write_bytes(f.png)
    html_path = out / "report.html"
    html_path.write_text(render_html(run, figures), encoding="utf-8")
    return Report(html_path, figures)
