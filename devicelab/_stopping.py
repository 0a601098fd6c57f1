"""Adaptive repetitions: when has a cell been measured often enough? A pure rule on records.

With ``[scenario] repetitions = "auto"`` a cell (one row of the summary: model, quant, task
and L) is repeated until the 95 % confidence interval of its median lies within
``target_ci_pct`` of the median, for every deciding metric, or until ``max_repetitions``.

The interval is the distribution-free one from order statistics, not a bootstrap: the
number of values below the true median is Binomial(n, 1/2) whatever the distribution, so
``[x(k), x(n+1-k)]`` (sorted values, 1-based) covers the median with probability
``1 - 2 P(B <= k-1)``; ``k`` is the largest with that at least 95 %. It needs no resampling
(so no seed, nothing random) and assumes nothing about the shape of the timings, which on a
phone are skewed and have outliers. Its price: below 6 values no ``k`` reaches 95 %
(``2 / 2**5`` = 6.25 % > 5 %), so a cell cannot stop before it has 6 values, whatever
``min_repetitions`` says. Each repetition of a cell gives one value per document and item in
it, so a cell over 2 documents has 6 values after 3 repetitions.

This module knows records and numbers only; :mod:`devicelab._runtime.schedule` turns its
decisions into the trials an executor runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from . import _record
from ._record import RUN_KEY, TrialRecord

CONFIDENCE = 0.95


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> int | None:
    """The 1-based rank ``k`` of the lower bound of the order-statistics interval of the
    median of ``n`` values (the upper bound is rank ``n + 1 - k``); ``None`` when ``n`` values
    are too few for ``confidence``."""
    alpha = 1.0 - confidence
    ks = np.arange(1, n // 2 + 1)
    # P(B <= k - 1) rises with k, so the ranks that keep the coverage are a prefix.
    ok = ks[stats.binom.cdf(ks - 1, n, 0.5) <= alpha / 2]
    return int(ok[-1]) if ok.size else None


# The fewest values with a 95 % interval of the median.
MIN_VALUES = next(n for n in range(1, 100) if median_ci_ranks(n) is not None)


def median_ci(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The distribution-free ``confidence`` interval of the median of ``values``."""
    k = median_ci_ranks(len(values), confidence)
    if k is None:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[len(ordered) - k]


def ci_pct(values: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """How far the interval reaches from the median, as a percentage of the median: the
    larger of its two sides (the interval is not symmetric). ``None``: too few values."""
    ci = median_ci(values, confidence)
    if ci is None:
        return None
    median = statistics.median(values)
    reach = max(median - ci[0], ci[1] - median)
    if reach == 0:
        return 0.0
    return math.inf if median == 0 else 100.0 * reach / abs(median)


# Fields a cell can be decided by: those summarised by their median, per trial.
DECIDING: tuple[str, ...] = tuple(
    f.name for f in _record.FIELDS if f.stat == "median" and f.per_trial
)
# What decides when a scenario names none: the fields above that decide by default.
DEFAULT_DECIDING: tuple[str, ...] = tuple(
    f.name for f in _record.FIELDS if f.name in DECIDING and f.decides
)


@dataclass(frozen=True)
class Rule:
    """The ``[scenario]`` settings of adaptive repetitions (defaults there)."""

    min_repetitions: int
    max_repetitions: int
    target_ci_pct: float
    # Empty: every field of DECIDING that the cell's trials measured.
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stop:
    """Why a cell stopped after ``repetitions``: ``reason`` is what summary.json says."""

    repetitions: int
    reason: str
    # "target": the interval reached the target; "max": max_repetitions came first;
    # "failed": no trial of the cell finished ok; "duration": a sustained cell's time is up.
    why: Literal["target", "max", "failed", "duration"]

    @property
    def converged(self) -> bool:
        return self.why == "target"


def decide(records: Iterable[TrialRecord], repetitions: int, rule: Rule) -> Stop | None:
    """Whether a cell stops after ``repetitions`` repetitions; ``records`` are its trials of
    those repetitions (failed ones too). ``None``: it needs another.

    Failed trials count as repetitions run, but give no value: a cell with failures needs
    more repetitions to reach its interval. A cell whose trials all failed stops at
    ``min_repetitions``, since more of the same is unlikely to measure anything.
    """
    if repetitions < rule.min_repetitions:
        return None
    records = list(records)
    measured = [r for r in records if r.measured]
    if not measured:
        return Stop(repetitions, f"every trial failed ({repetitions} repetitions)", "failed")
    wanted = rule.metrics or DEFAULT_DECIDING
    widths: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in wanted:
        values = [v for v in (r.value(name) for r in measured) if v is not None]
        if values:
            pct = ci_pct(values)
            # Too few values for any interval: as wide as can be.
            widths[name] = math.inf if pct is None else pct
            counts[name] = len(values)
    if not widths:
        if repetitions >= rule.max_repetitions:
            return Stop(
                repetitions,
                f"max_repetitions {rule.max_repetitions}, no trial measured {' or '.join(wanted)}",
                "max",
            )
        return None
    # The widest interval decides.
    metric = max(widths, key=widths.__getitem__)
    worst = widths[metric]
    if worst <= rule.target_ci_pct:
        return Stop(
            repetitions,
            f"ci ±{worst:.1f}% <= {rule.target_ci_pct:g}% after {repetitions} ({metric})",
            "target",
        )
    if repetitions >= rule.max_repetitions:
        n = counts[metric]
        width = (
            f"{n} values, too few for a 95% ci (it needs {MIN_VALUES})"
            if n < MIN_VALUES
            else f"ci ±{worst:.1f}%"
        )
        return Stop(
            repetitions, f"max_repetitions {rule.max_repetitions}, {width} ({metric})", "max"
        )
    return None


def with_stops(
    rows: Iterable[dict[str, Any]], stops: Mapping[tuple[Any, ...], Stop]
) -> list[dict[str, Any]]:
    """Summary rows with ``stopped``: why their cell (by ``RUN_KEY``) stopped repeating."""
    out = []
    for row in rows:
        stop = stops.get(tuple(row.get(k) for k in RUN_KEY))
        out.append({**row, "stopped": stop.reason if stop else None})
    return out
