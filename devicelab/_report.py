"""``devicelab report``: one self-contained HTML file (figures embedded as base64 PNG) and
the PNG files beside it, from a finished run directory.

Figures: each per-trial field of FIELDS that the run reports against context length (one line
per model/quant, one panel per task; fields sharing a ``figure`` share a file: speed.png holds
ITPS, OTPS, TTFT and runtime, memory.png peak memory); telemetry timelines (temperature,
memory, token rate) with the prefill and decode phases shaded. Tables: the summary rows
(devicelab._metrics.summarize) with throttled trials counted, and the mean of each quality
metric, built by devicelab._table as the CLI's are. Only measured trials (warm-ups and failed
trials left out) are used.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _metrics as metrics
from . import _noise as noise
from . import _record
from ._errors import MissingDependencyError
from ._record import STATS, Field, TrialRecord
from ._rundir import RunData, load_run
from ._table import quality_table, summary_table, to_html

MAX_TIMELINES = 8
STAT_NOUNS = {"median": "Medians", "mean": "Means", "min": "Minima", "max": "Maxima"}
TIMELINE_SERIES = (("temp_c", "temperature (°C)"), ("mem_mb", "memory (MB)"), ("tok_s", "tok/s"))
PHASE_COLORS = {"prefill": "tab:orange", "decode": "tab:green"}


@dataclass
class Figure:
    name: str  # file name, e.g. "speed.png"
    title: str
    png: bytes
    note: str = ""


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
    records: Iterable[TrialRecord], field: Field, task: str
) -> dict[str, list[tuple[int, float]]]:
    """``model/quant`` -> sorted (L, the field's statistic) for one task."""
    cells: dict[tuple[str, int], list[float]] = {}
    for r in records:
        ident = r.identity
        if str(ident.task) != task:
            continue
        v = r.value(field.name)
        if v is None or not isinstance(ident.context_tokens, int):
            continue
        cells.setdefault((f"{ident.model}/{ident.quant}", ident.context_tokens), []).append(v)
    out: dict[str, list[tuple[int, float]]] = {}
    for (line, length), vals in sorted(cells.items()):
        out.setdefault(line, []).append((length, STATS[field.stat](vals)))
    return out


def _against_l(records: Sequence[TrialRecord], fields: Sequence[Field]) -> bytes:
    plt = _pyplot()
    tasks = _tasks(records)
    fig, axes = plt.subplots(
        len(fields), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(fields)), squeeze=False
    )
    for i, field in enumerate(fields):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for line, points in series(records, field, task).items():
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=line)
            ax.set_xlabel("context length L (tokens)")
            ax.set_ylabel(field.title)
            ax.set_title(task if i == 0 else "")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


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
<p class="note">Medians over measured trials (warm-ups and failed trials left out); peak memory is
the maximum. "throttled" counts trials the device reported as throttled (of those where it
reported anything); "noisy" (shown when there are any) counts trials during which other
processes used more of the device's CPU than [noise] max_other_cpu_pct allows ("other CPU" is
the highest share seen); rows with either are marked.</p>
{medians}
<h2>Quality</h2>
{quality}
{figures}
</body></html>
"""


def render_html(run: RunData, figures: Sequence[Figure]) -> str:
    rows = metrics.summarize(run.records)
    med = (
        to_html(summary_table(rows, device=True, throttle=True))
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
        )
    n_trials = len(run.measured)
    summary = f"{run.path}: {n_trials} measured trials."
    noisy = noise.run_note(run.records)
    if noisy:
        summary += f" {noisy}"
    return TEMPLATE.format(
        title=html.escape(run.path.name or str(run.path)),
        summary=html.escape(summary),
        medians=med,
        quality=quality,
        figures="\n".join(parts),
    )


def make_figures(run: RunData, cap: int = MAX_TIMELINES) -> list[Figure]:
    records = run.measured
    if not records:
        return []
    figures = []
    for name, fields in figure_groups(records).items():
        what = fields[0].label if len(fields) == 1 else name
        stats = sorted({STAT_NOUNS[f.stat] for f in fields})
        figures.append(
            Figure(
                f"{name}.png",
                f"{what[:1].upper()}{what[1:]} against context length",
                _against_l(records, fields),
                f"{' and '.join(stats)} per model/quant, task and L; one line per model/quant, "
                "one panel per task.",
            )
        )
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


def build_report(run_dir: Path, out_dir: Path | None = None, cap: int = MAX_TIMELINES) -> Report:
    """Write ``report.html`` and the PNG figures into ``out_dir`` (default RUN_DIR/report)."""
    run = load_run(run_dir)
    out = out_dir if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = make_figures(run, cap)
    for f in figures:
        (out / f.name).write_bytes(f.png)
    html_path = out / "report.html"
    html_path.write_text(render_html(run, figures), encoding="utf-8")
    return Report(html_path, figures)
