"""The report's per-token figures, from the run's ``tokens.jsonl`` (devicelab._tokens): the
inter-token latency CDF per model and L, and the decode rate against token position.

Only what the times resolve is drawn: the ITL CDF takes the gaps between arrivals after the
first of trials whose later arrivals carried one token each (a trial that saw batches has no
gaps to give, and is counted as left out in the note); the decode rate is taken over windows
of token positions wide enough to span arrivals, so a batched trial gives it too.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._record import TrialRecord, cell_label, hidden_keys
from ._rundir import RunData
from ._tokens import percentile

LINE_KEY = ("model", "quant", "engine", "variant")
WINDOWS = 16  # token-position windows of the decode-rate figure
CDF_POINTS = (1, 5, 10, 25, 50, 75, 90, 95, 99, 100)  # percentiles kept in the page's JSON


def _lines(records: Sequence[TrialRecord]) -> dict[str, str]:
    """trial_id -> ``model/quant L=...`` (engine and variant where they tell lines apart)."""
    hide = hidden_keys([r.cell(LINE_KEY) for r in records], LINE_KEY)
    return {
        r.trial_id: f"{cell_label(r.cell(LINE_KEY), LINE_KEY, hide)} L={r.identity.context_tokens}"
        for r in records
    }


def resolved_gaps(ms: Sequence[float]) -> list[float]:
    """The gaps (ms) between the tokens after the first arrival (which may carry several:
    MLC's held-back ``<``), for a trial whose record says its gaps are real. Offsets are
    rounded to 0.01 ms, so two arrivals closer than that read as a gap of 0."""
    first = next((i for i, t in enumerate(ms) if t != ms[0]), len(ms))  # tokens at the first
    return [b - a for a, b in itertools.pairwise(ms[first - 1 :])]


def window_rates(ms: Sequence[float], windows: int = WINDOWS) -> list[tuple[float, float]]:
    """(centre token position, tok/s) per window of positions after the first token; a
    window whose tokens all came at one arrival gives no rate."""
    n = len(ms) - 1
    if n < 1:
        return []
    width = max(1, -(-n // windows))
    out = []
    for start in range(0, n, width):
        end = min(start + width, n)
        span = ms[end] - ms[start]
        if span > 0:
            out.append(((start + end) / 2, (end - start) / span * 1000.0))
    return out


def itl_cdf(run: RunData) -> tuple[dict[str, dict[str, Any]], int]:
    """task -> line -> the pooled ITL percentiles (:data:`CDF_POINTS`) and gap count, and the
    number of trials with token times left out as batched."""
    lines = _lines(run.measured)
    pooled: dict[str, dict[str, list[float]]] = {}
    batched = 0
    for r in run.measured:
        ms = run.token_times(r)
        if len(ms) < 2:
            continue
        # The record says whether the gaps are real (an engine that polls a screen sees one
        # token per poll at times, yet its gaps are the polling interval's).
        gaps = resolved_gaps(ms) if r.measures.itl_p50_ms is not None else None
        if not gaps:
            batched += bool(run.tokens[r.trial_id].get("batched"))
            continue
        pooled.setdefault(str(r.identity.task), {}).setdefault(lines[r.trial_id], []).extend(gaps)
    return {
        task: {
            line: {"n": len(g), **{f"p{q}": round(percentile(g, q), 3) for q in CDF_POINTS}}
            for line, g in sorted(per.items())
        }
        for task, per in sorted(pooled.items())
    }, batched


def decode_by_position(run: RunData) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """task -> line -> (token position, median tok/s over the line's trials)."""
    lines = _lines(run.measured)
    acc: dict[str, dict[str, dict[float, list[float]]]] = {}
    for r in run.measured:
        for pos, rate in window_rates(run.token_times(r)):
            per = acc.setdefault(str(r.identity.task), {}).setdefault(lines[r.trial_id], {})
            per.setdefault(pos, []).append(rate)
    return {
        task: {
            line: [(p, round(statistics.median(v), 3)) for p, v in sorted(by_pos.items())]
            for line, by_pos in sorted(per.items())
        }
        for task, per in sorted(acc.items())
    }


def run_note(run: RunData) -> str:
    """A sentence for a run whose trials have no token times ("" when some have)."""
    if run.tokens or not run.measured:
        return ""
    return (
        "This run has no per-token timings (no tokens.jsonl: it was made before devicelab "
        "kept them), so its ITL, TPOT and quarter decode-rate columns are blank."
    )


def _per_task(
    pyplot: Any,
    by_task: Mapping[str, Any],
    draw: Callable[[Any, Any], None],
    xlabel: str,
    ylabel: str,
) -> Any:
    """A figure of one plot per task, side by side; ``draw(ax, lines)`` draws a task's lines."""
    fig, axes = pyplot.subplots(1, len(by_task), figsize=(4.6 * len(by_task), 3.2), squeeze=False)
    for ax, (task, per) in zip(axes[0], by_task.items(), strict=True):
        draw(ax, per)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(run: RunData, pyplot: Any, png: Any, figure: Any) -> list[Any]:
    """The ITL CDF and the decode rate against token position, as report Figures (made by
    ``figure(name, title, png, note, data)``); none for a run without token times."""
    out = []
    cdf, batched = itl_cdf(run)
    if cdf:

        def draw_cdf(ax: Any, per: dict[str, Any]) -> None:
            for line, d in per.items():
                xs = [d[f"p{q}"] for q in CDF_POINTS]
                ax.plot(xs, [q / 100 for q in CDF_POINTS], marker=".", label=f"{line} (n={d['n']})")

        fig = _per_task(pyplot, cdf, draw_cdf, "inter-token latency (ms)", "share of gaps")
        left = f" {batched} trials that saw tokens in batches are left out." if batched else ""
        note = (
            "The gaps between token arrivals after the first, pooled over each model/quant "
            f"and L's measured trials; a line's points are its percentiles {CDF_POINTS}.{left}"
        )
        out.append(figure("itl_cdf.png", "Inter-token latency CDF", png(fig), note, cdf))
    rates = decode_by_position(run)
    if rates:

        def draw_rates(ax: Any, per: dict[str, Any]) -> None:
            for line, points in per.items():
                ax.plot([p for p, _ in points], [v for _, v in points], marker=".", label=line)

        fig = _per_task(pyplot, rates, draw_rates, "output token position", "decode rate (tok/s)")
        note = (
            f"Tokens over time in {WINDOWS} windows of token positions after the first token, "
            "the median over each model/quant and L's measured trials: a falling line is "
            "decode slowing as the KV cache grows."
        )
        data = {
            t: {line: [list(p) for p in pts] for line, pts in per.items()}
            for t, per in rates.items()
        }
        out.append(
            figure(
                "decode_position.png", "Decode rate against token position", png(fig), note, data
            )
        )
    return out
