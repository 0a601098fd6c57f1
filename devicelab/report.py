"""``devicelab report``: one self-contained HTML file (figures embedded as base64 PNG) and
the PNG files beside it, from a finished run directory.

Figures: ITPS, OTPS, TTFT and runtime against context length (one line per model/quant,
one panel per task); peak memory against L; telemetry timelines (temperature, memory,
token rate) with the prefill and decode phases shaded. Tables: medians per key with
throttled trials counted, and the mean of each quality metric. Only measured trials
(warm-ups and failed trials left out) are used.
"""

from __future__ import annotations

import base64
import html
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import metrics
from .errors import MissingDependencyError
from .results import TELEMETRY, read_jsonl
from .runs import Run, load_run, metric_value

MAX_TIMELINES = 8
SPEED_METRICS = (
    ("itps", "ITPS (tok/s)"),
    ("otps", "OTPS (tok/s)"),
    ("ttft_s", "TTFT (s)"),
    ("runtime_s", "runtime (s)"),
)
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


def _tasks(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r.get("task")) for r in records})


def series(
    records: Iterable[Mapping[str, Any]], metric: str, task: str, agg: str = "median"
) -> dict[str, list[tuple[int, float]]]:
    """``model/quant`` -> sorted (L, median or max of ``metric``) for one task."""
    cells: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if str(r.get("task")) != task:
            continue
        v = metric_value(r, metric)
        if v is None or not isinstance(r.get("context_tokens"), int):
            continue
        cells.setdefault((f"{r.get('model')}/{r.get('quant')}", r["context_tokens"]), []).append(v)
    out: dict[str, list[tuple[int, float]]] = {}
    for (line, length), vals in sorted(cells.items()):
        value = max(vals) if agg == "max" else statistics.median(vals)
        out.setdefault(line, []).append((length, value))
    return out


def _against_l(
    records: Sequence[Mapping[str, Any]], rows: Sequence[tuple[str, str]], agg: str
) -> bytes:
    plt = _pyplot()
    tasks = _tasks(records)
    fig, axes = plt.subplots(
        len(rows), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(rows)), squeeze=False
    )
    for i, (metric, label) in enumerate(rows):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for line, points in series(records, metric, task, agg).items():
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=line)
            ax.set_xlabel("context length L (tokens)")
            ax.set_ylabel(label)
            ax.set_title(task if i == 0 else "")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def pick_timeline_trials(
    records: Sequence[Mapping[str, Any]], cap: int = MAX_TIMELINES
) -> tuple[list[Mapping[str, Any]], str]:
    """The measured trials of the longest L, at most ``cap`` of them, and a note saying so."""
    lengths = [r["context_tokens"] for r in records if isinstance(r.get("context_tokens"), int)]
    if not lengths:
        return [], "no measured trials"
    longest = max(lengths)
    chosen = [r for r in records if r.get("context_tokens") == longest]
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


def _timelines(
    trials: Sequence[Mapping[str, Any]], telemetry: Sequence[Mapping[str, Any]]
) -> bytes:
    plt = _pyplot()
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for s in telemetry:
        by_trial.setdefault(str(s.get("trial_id")), []).append(s)
    fig, axes = plt.subplots(
        len(trials), len(TIMELINE_SERIES), figsize=(12, 2.4 * len(trials)), squeeze=False
    )
    for i, rec in enumerate(trials):
        samples = sorted(
            (s for s in by_trial.get(str(rec.get("trial_id")), []) if s.get("phase") != "cooldown"),
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
                ax.set_title(
                    f"{rec.get('model')}/{rec.get('quant')} {rec.get('task')} "
                    f"L={rec.get('context_tokens')} rep {rec.get('repetition')}",
                    fontsize=8,
                    loc="left",
                )
            if i == 0 and j == 0 and spans:
                ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def median_rows(run: Run) -> list[dict[str, Any]]:
    """The CLI summary rows, each with ``throttled`` (count of throttled trials) and
    ``throttle_known`` (trials where throttling was reported true or false)."""
    rows = metrics.summarize(run.records)
    for row in rows:
        recs = [r for r in run.records if all(r.get(k) == row[k] for k in metrics.SUMMARY_KEYS)]
        row["throttled"] = sum(1 for r in recs if r.get("throttled") is True)
        row["throttle_known"] = sum(1 for r in recs if r.get("throttled") is not None)
    return rows


def quality_rows(run: Run) -> tuple[list[str], list[dict[str, Any]]]:
    """The quality metric names and, per model/quant/task/L, the mean of each."""
    cells: dict[tuple[str, str, str, int], dict[str, list[float]]] = {}
    names: set[str] = set()
    for r in run.records:
        quality = r.get("quality")
        if not isinstance(quality, dict):
            continue
        key = (str(r.get("model")), str(r.get("quant")), str(r.get("task")), r["context_tokens"])
        for name, value in quality.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                names.add(name)
                cells.setdefault(key, {}).setdefault(name, []).append(float(value))
    rows = []
    for (model, quant, task, length), vals in sorted(cells.items()):
        row: dict[str, Any] = {
            "model": model,
            "quant": quant,
            "task": task,
            "context_tokens": length,
        }
        row.update({n: statistics.fmean(v) for n, v in vals.items()})
        rows.append(row)
    return sorted(names), rows


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], marks: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="flag"' if i < len(marks) and marks[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


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
reported anything); rows with any are marked.</p>
{medians}
<h2>Quality</h2>
{quality}
{figures}
</body></html>
"""


def render_html(run: Run, figures: Sequence[Figure]) -> str:
    rows = median_rows(run)
    med = _table(
        ["device", "model", "quant", "task", "L", "n", "ITPS tok/s", "OTPS tok/s", "TTFT s",
         "runtime s", "peak mem MB", "throttled"],
        [
            [
                str(r["device"]), str(r["model"]), str(r["quant"]), str(r["task"]),
                str(r["context_tokens"]), str(r["n"]), _num(r["itps"], 1), _num(r["otps"], 1),
                _num(r["ttft_s"], 3), _num(r["runtime_s"], 2), _num(r["peak_mem_mb"], 0),
                f"{r['throttled']}/{r['throttle_known']}" if r["throttle_known"] else "unknown",
            ]
            for r in rows
        ],
        [r["throttled"] > 0 for r in rows],
    ) if rows else "<p>No measured trials finished ok; nothing to summarise.</p>"  # fmt: skip
    names, qrows = quality_rows(run)
    if names:
        quality = '<p class="note">The mean of each quality metric.</p>' + _table(
            ["model", "quant", "task", "L", *names],
            [
                [r["model"], r["quant"], r["task"], str(r["context_tokens"])]
                + [_num(r.get(n), 3) for n in names]
                for r in qrows
            ],
        )
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
    n_trials = len(run.records)
    return TEMPLATE.format(
        title=html.escape(run.path.name or str(run.path)),
        summary=html.escape(f"{run.path}: {n_trials} measured trials."),
        medians=med,
        quality=quality,
        figures="\n".join(parts),
    )


def make_figures(run: Run, cap: int = MAX_TIMELINES) -> list[Figure]:
    records = run.records
    if not records:
        return []
    figures = [
        Figure(
            "speed.png",
            "Speed against context length",
            _against_l(records, SPEED_METRICS, "median"),
            "Medians; one line per model/quant, one panel per task.",
        ),
        Figure(
            "memory.png",
            "Peak memory against context length",
            _against_l(records, [("peak_mem_mb", "peak memory (MB)")], "max"),
            "The largest peak memory per model/quant, task and L.",
        ),
    ]
    trials, note = pick_timeline_trials(records, cap)
    telemetry = list(read_jsonl(run.path / TELEMETRY))
    if trials and telemetry:
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
