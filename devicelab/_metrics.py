"""Speed metrics from timestamps and token counts, exactly as the contracts define them, and
the summary of a run (:func:`summarize`: one row per cell, the rows every table shows).

- TTFT = request sent -> first output token
- ITPS = input_tokens / TTFT
- OTPS = (output_tokens - tokens of the first arrival) / (last token time - first token time):
  the tokens that came after the first arrival over the time they took (an engine that
  streams its first two tokens as one chunk is not credited with an interval it never took)
- runtime = request sent -> last token

Dispersion (:func:`spread`), beside each field summarised by its median (or mean): the 25th
and 75th percentiles (``statistics.quantiles(values, n=4, method="inclusive")``: linear
interpolation between order statistics, numpy's default, so p25 and p75 stay inside the
measured range however few values there are) and the coefficient of variation in percent
(sample standard deviation, n - 1, over the mean). A field summarised by its maximum (peak
memory, temperature, load time) is a bound, not a typical value: it gets no spread and no
CV check. A cell is *unstable* (:func:`instability`) when the CV of any median (or mean)
field is above ``[scenario] max_cv`` or any of its trials was noisy (``noisy: true``).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _record
from ._noise import noisy_count
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
    after = output_tokens - sum(1 for t in token_times if t == first)
    otps = after / span if after > 0 and span > 0 else None
    return Speed(ttft_s=ttft, itps=itps, otps=otps, runtime_s=last - t_sent)


# [scenario] max_cv's default: a CV above 10 % is more than twice the median per-cell CV
# measured on a quiet host over 3 repetitions (4.2 %), and the noisy OTPS cell there (11.5 %)
# is above it.
DEFAULT_MAX_CV = 10.0
# The statistics whose cells get a spread: central values. A max or min is a bound.
SPREAD_STATS = frozenset({"median", "mean"})


@dataclass(frozen=True)
class Spread:
    """How the values behind a median spread: the interquartile range and the CV."""

    p25: float
    p75: float
    cv_pct: float | None  # sample stdev / mean * 100; None with one value or a mean of 0

    def to_json(self) -> dict[str, float | None]:
        return {"p25": self.p25, "p75": self.p75, "cv_pct": self.cv_pct}


def spread(values: Sequence[float]) -> Spread | None:
    """p25, p75 (inclusive quantiles) and CV (%) of ``values``; ``None`` when empty."""
    if not values:
        return None
    if len(values) == 1:
        return Spread(values[0], values[0], None)
    p25, _, p75 = statistics.quantiles(values, n=4, method="inclusive")
    mean = statistics.fmean(values)
    cv = statistics.stdev(values) / abs(mean) * 100 if mean else None
    return Spread(p25, p75, cv)


def has_spread(f: Field) -> bool:
    """Whether the views show ``f``'s spread and check its CV (a median or mean field)."""
    return f.stat in SPREAD_STATS


def instability(
    spreads: Mapping[str, Spread | None], noisy: int, max_cv: float = DEFAULT_MAX_CV
) -> list[str]:
    """Why a cell is unstable (empty: it is not): the median (or mean) fields of ``spreads``
    whose CV is above ``max_cv`` (%), as ``CV > 10%: OTPS, runtime`` (their CVs are in the
    spreads), and its ``noisy`` trials."""
    over = [
        f.label
        for f, s in ((_record.FIELD_BY_NAME[name], s) for name, s in spreads.items())
        if has_spread(f) and s is not None and s.cv_pct is not None and s.cv_pct > max_cv
    ]
    reasons = [f"CV > {max_cv:g}%: {', '.join(over)}"] if over else []
    if noisy:
        reasons.append(f"{noisy} noisy trial{'s' if noisy > 1 else ''}")
    return reasons


def summarize(
    records: Iterable[TrialRecord], max_cv: float = DEFAULT_MAX_CV
) -> list[dict[str, Any]]:
    """One row per cell (:data:`CELL_KEY`) of measured trials, sorted by cell.

    Each row has the cell's keys, ``n`` (the trials behind it), each field of :data:`FIELDS`
    summarised by its statistic (``None`` when no trial reported it), ``spread`` (field ->
    ``{p25, p75, cv_pct}`` for each median or mean field, ``None`` when no trial reported
    it), ``unstable`` and ``unstable_reasons`` (:func:`instability` with ``max_cv``),
    ``quality`` (the mean of each quality metric, over the trials that have it),
    ``throttled`` (trials the device reported throttled) and ``throttle_known`` (trials where
    it reported either way) and ``noisy`` (trials other processes' CPU use marked noisy, see
    devicelab._noise).
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
        spreads: dict[str, Spread | None] = {}
        for f in _record.FIELDS:
            values = field_values(f, recs if f.per_trial else groups[cell])
            row[f.name] = STATS[f.stat](values) if values else None
            if has_spread(f):
                spreads[f.name] = spread(values)
        row["spread"] = {k: None if s is None else s.to_json() for k, s in spreads.items()}
        noisy = noisy_count(recs)
        reasons = instability(spreads, noisy, max_cv)
        row["unstable"] = bool(reasons)
        row["unstable_reasons"] = reasons
        row["quality"] = quality_means(recs)
        row["throttled"] = sum(1 for r in recs if r.thermal.throttled is True)
        row["throttle_known"] = sum(1 for r in recs if r.thermal.throttled is not None)
        row["noisy"] = noisy
        rows.append(row)
    return rows


def field_values(f: Field, records: Iterable[TrialRecord]) -> list[float]:
    """``f``'s values over ``records``, those that have one."""
    return [v for v in (r.value(f.name) for r in records) if v is not None]


def field_stat(f: Field, records: Iterable[TrialRecord]) -> float | None:
    """``f``'s summary statistic over ``records`` (``None`` when none has a value)."""
    values = field_values(f, records)
    return STATS[f.stat](values) if values else None


def unstable_line(rows: Sequence[Mapping[str, Any]], max_cv: float = DEFAULT_MAX_CV) -> str:
    """The run's last word on its numbers: how many cells are unstable, and what to do."""
    bad = sum(1 for r in rows if r.get("unstable"))
    if bad:
        return (
            f"{bad} of {len(rows)} cells are unstable (CV above max_cv {max_cv:g}% or noisy "
            "trials; see the table's unstable column): add repetitions, quieten the device "
            '(close other apps and jobs, let it cool), or set [scenario] repetitions = "auto".'
        )
    single = sum(1 for r in rows if r.get("n", 0) < 2)
    if rows and single == len(rows):
        return (
            f"the spread of {len(rows)} cells is unknown: one measured trial each. Use "
            "[scenario] repetitions = 3 or more to see how stable the numbers are."
        )
    if single:
        return (
            f"{len(rows) - single} of {len(rows)} cells are stable (CV at most {max_cv:g}%, no "
            f"noisy trials); {single} {'has' if single == 1 else 'have'} a single measured trial, "
            "so its spread is unknown."
        )
    return f"all {len(rows)} cells are stable (CV at most {max_cv:g}%, no noisy trials)."


def quality_means(records: Iterable[TrialRecord]) -> dict[str, float]:
    """The mean of each numeric quality value over the ``records`` that have it, by name."""
    values: dict[str, list[float]] = {}
    for rec in records:
        for name, value in rec.quality.values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.setdefault(str(name), []).append(float(value))
    return {name: statistics.fmean(v) for name, v in sorted(values.items())}
