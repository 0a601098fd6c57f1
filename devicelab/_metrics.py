"""Speed metrics from timestamps and token counts, exactly as the contracts define them, and
the summary of a run (:func:`summarize`: one row per cell, the rows every table shows).

- TTFT = request sent -> first output token
- ITPS = input_tokens / TTFT
- OTPS = (output_tokens - 1) / (last token time - first token time)
- runtime = request sent -> last token
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _record
from ._record import CELL_KEY, STATS, Field, TrialRecord, cell_sort_key


@dataclass(frozen=True)
class Speed:
    ttft_s: float | None
    itps: float | None
    otps: float | None
    runtime_s: float | None


def speed(
    t_sent: float, token_times: Sequence[float], input_tokens: int, output_tokens: int
) -> Speed:
    """Compute the speed metrics. Values that the data cannot give are ``None``."""
    if not token_times:
        return Speed(None, None, None, None)
    first, last = token_times[0], token_times[-1]
    ttft = first - t_sent
    itps = input_tokens / ttft if ttft > 0 else None
    span = last - first
    otps = (output_tokens - 1) / span if output_tokens > 1 and span > 0 else None
    return Speed(ttft_s=ttft, itps=itps, otps=otps, runtime_s=last - t_sent)


def summarize(records: Iterable[TrialRecord]) -> list[dict[str, Any]]:
    """One row per cell (:data:`CELL_KEY`) of measured trials, sorted by cell.

    Each row has the cell's keys, ``n`` (the trials behind it), each field of :data:`FIELDS`
    summarised by its statistic (``None`` when no trial reported it), ``quality`` (the mean
    of each quality metric, over the trials that have it), ``throttled`` (trials the device
    reported throttled), ``throttle_known`` (trials where it reported either way) and
    ``noisy`` (trials other processes' CPU use marked noisy, see devicelab._noise).
    Warm-up and failed trials are left out, except from a field measured once per model load
    (``per_trial`` false: load_s), which the first trial after the load carries, and that
    trial is usually a warm-up.
    """
    groups: dict[tuple[Any, ...], list[TrialRecord]] = {}
    for rec in records:
        if rec.ok:
            groups.setdefault(rec.cell(), []).append(rec)
    rows = []
    for cell in sorted(groups, key=cell_sort_key):
        recs = [r for r in groups[cell] if r.measured]
        if not recs:
            continue
        row: dict[str, Any] = dict(zip(CELL_KEY, cell, strict=True))
        row["n"] = len(recs)
        for f in _record.FIELDS:
            row[f.name] = field_stat(f, recs if f.per_trial else groups[cell])
        row["quality"] = quality_means(recs)
        row["throttled"] = sum(1 for r in recs if r.thermal.throttled is True)
        row["throttle_known"] = sum(1 for r in recs if r.thermal.throttled is not None)
        row["noisy"] = sum(1 for r in recs if r.tries.noisy is True)
        rows.append(row)
    return rows


def field_stat(f: Field, records: Iterable[TrialRecord]) -> float | None:
    """``f``'s summary statistic over ``records`` (``None`` when none has a value)."""
    values = [v for v in (r.value(f.name) for r in records) if v is not None]
    return STATS[f.stat](values) if values else None


def quality_means(records: Iterable[TrialRecord]) -> dict[str, float]:
    """The mean of each numeric quality value over the ``records`` that have it, by name."""
    values: dict[str, list[float]] = {}
    for rec in records:
        for name, value in rec.quality.values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.setdefault(str(name), []).append(float(value))
    return {name: statistics.fmean(v) for name, v in sorted(values.items())}
