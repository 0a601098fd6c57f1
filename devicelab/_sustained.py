"""Sustained load: each cell run back to back (``[sustained]`` in a scenario), and what its
trials say over time.

A sustained segment is a cell's measured trials run one after another, with no cooldown
between them (``[thermal] cooldown_below_c`` still waits before a segment's first trial, so
every cell starts as cool), for ``duration_s`` seconds or for ``trials`` trials. From a
cell's trials and the run's telemetry, :func:`segment` gives:

- the rate series: per bin of ``bin_s`` seconds from the segment's first trial start, the
  median OTPS and ITPS of the trials that started in it (a bin no trial started in is left
  out);
- the steady state: the bins from the last change point of the series on (the project's
  change points, :mod:`devicelab._changes`, on the series itself; the whole series when it
  has none; a change point less than :data:`MIN_STEADY_BINS` bins from the end does not
  count), its level the median of those bins; a last bin the segment covers less than half
  of (the trial that ran past the duration) is left out of the series;
- the burst (the first bin) and the burst-to-steady ratio, per rate;
- the time to the first throttled telemetry sample (a thermal status of MODERATE or above,
  or a CPU frequency cap below the highest seen earlier in the run: what makes a record
  ``throttled``), ``None`` when none was, or the device reports neither.

Across cells, :func:`with_sustained` adds the rank stability: Kendall's tau (tau-b, scipy)
between the cells' ranking in their first bin and in their steady state, per rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from ._changes import change_points, require_otava
from ._metrics import summarize
from ._record import CELL_KEY, RUN_KEY, TrialRecord, cell_label, hidden_keys
from ._runtime.thermal import ThermalWatch
from ._scenarioerrors import As, fail
from ._table import Column, Table, _cells
from ._validation import STRICT

if TYPE_CHECKING:
    from ._rundir import RunData

# A duration segment stops after this many repetitions even before its duration is up: the
# plan lists every trial that may run.
MAX_TRIALS = 1000
RATES = ("otps", "itps")
# A steady state is a level seen for at least this many bins: a change point closer to the
# end of the series is not taken as its start (one slow last bin is not yet a new level).
MIN_STEADY_BINS = 3
TITLE = "Sustained load"


class SustainedTable(BaseModel):
    model_config = STRICT
    written_when_default: ClassVar[bool] = False
    duration_s: Annotated[float | None, As("sustained_duration_s")] = Field(
        None,
        gt=0,
        description="run each cell's trials back to back, with no cooldown between them, "
        f"until this many seconds have passed since its first began (at most {MAX_TRIALS} "
        "repetitions); its measured trials are this segment, so `[scenario] repetitions` is "
        "not used; see docs/sustained.md",
    )
    trials: Annotated[int | None, As("sustained_trials")] = Field(
        None, ge=1, description="or: this many back-to-back trials per cell"
    )
    bin_s: Annotated[float, As("sustained_bin_s")] = Field(
        60.0,
        gt=0,
        description="the rate series' bin: the median OTPS and ITPS of the trials that "
        "started in each",
    )


def check_table(table: SustainedTable, given: bool, scenario: Any) -> None:
    """The checks of ``[sustained]`` against ``[scenario]`` (a ScenarioTable); ``given``:
    whether the file has the table."""
    if not given:
        return
    duration, trials = table.duration_s, table.trials
    if duration is None and trials is None:
        raise fail(
            "[sustained] needs duration_s (seconds each cell runs back to back) or trials "
            "(back-to-back trials per cell). Add one, or remove [sustained].",
            table="",
        )
    if duration is not None and trials is not None:
        raise fail(
            f"[sustained] has both duration_s ({duration:g}) and trials ({trials}). A segment "
            "is a duration or a number of trials: remove one.",
            table="",
        )
    if scenario.repetitions == "auto":
        raise fail(
            '[sustained] cannot be combined with [scenario] repetitions = "auto": a sustained '
            "segment runs each cell back to back for its duration_s or trials, not until its "
            "median is known. Remove repetitions (or [sustained]).",
            table="",
        )
    if scenario.repetitions != type(scenario).model_fields["repetitions"].default:
        instead = f"[sustained] trials = {scenario.repetitions}"
        raise fail(
            f"[scenario] repetitions = {scenario.repetitions} is not used with [sustained]: "
            "each cell's measured trials are its segment. Remove repetitions, or give "
            f"{instead}.",
            table="",
        )
    if scenario.order == "interleaved":
        raise fail(
            '[scenario] order = "interleaved" cannot be combined with [sustained], which runs '
            "each cell continuously. Remove order (or [sustained]).",
            table="",
        )
    if duration is not None and duration < scenario.timeout_s:
        raise fail(
            f"[sustained] duration_s: {duration:g} s is shorter than one trial's timeout "
            f"([scenario] timeout_s = {scenario.timeout_s:g} s), so one trial could outlast "
            f"the segment. Raise duration_s to at least {scenario.timeout_s:g}, or lower "
            "timeout_s.",
            table="",
        )
    if duration is not None and table.bin_s > duration:
        raise fail(
            f"[sustained] bin_s: {table.bin_s:g} s is longer than duration_s ({duration:g} s), "
            "so the series would be one bin. Lower bin_s (a tenth of duration_s gives ten "
            "bins), or raise duration_s.",
            table="",
        )


def require() -> None:
    """Before a sustained run: its steady state needs the change-point library."""
    require_otava("sustained runs (their steady state is found by change points)")


# --- the series ---------------------------------------------------------------------------


def seconds(iso: str) -> float:
    """An ISO time stamp (a record's ``started_at``) as POSIX seconds."""
    return datetime.fromisoformat(iso).timestamp()


def rate_bins(
    points: Iterable[tuple[float, float | None]], bin_s: float
) -> list[tuple[int, float]]:
    """(bin index, median rate) of ``points`` (start s since the segment began, rate), for
    each bin where a trial with a rate started, in time order."""
    bins: dict[int, list[float]] = {}
    for t, rate in points:
        if rate is not None:
            bins.setdefault(int(t // bin_s), []).append(rate)
    return [(k, statistics.median(v)) for k, v in sorted(bins.items())]


def steady_start(series: Sequence[float]) -> int:
    """Where the steady state of ``series`` begins: its last change point with at least
    :data:`MIN_STEADY_BINS` values from it on (0 with none)."""
    found = [c.index for c in change_points(list(series))]
    return max((i for i in found if len(series) - i >= MIN_STEADY_BINS), default=0)


def level(bins: Sequence[tuple[int, float]], bin_s: float) -> dict[str, float | None]:
    """Burst, steady state, where it starts (s) and their ratio, of one rate's bins."""
    if not bins:
        return {"burst": None, "steady": None, "steady_from_s": None, "burst_to_steady": None}
    start = steady_start([v for _, v in bins])
    steady = statistics.median(v for _, v in bins[start:])
    burst = bins[0][1]
    return {
        "burst": burst,
        "steady": steady,
        "steady_from_s": bins[start][0] * bin_s,
        "burst_to_steady": burst / steady if steady else None,
    }


def judged_samples(
    starts: Mapping[str, float], telemetry: Iterable[Mapping[str, Any]]
) -> list[tuple[float, str, bool | None]]:
    """(POSIX time, trial id, throttled) of every sample of the trials in ``starts`` (trial
    id -> start time), in time order. Each is judged as a record's ``throttled`` is, against
    the highest frequency caps seen earlier in the run; ``None``: it tells neither way."""
    timed: list[tuple[float, str, Mapping[str, Any]]] = []
    for s in telemetry:
        tid, t = s.get("trial_id"), s.get("t")
        # A cooldown's samples come before its trial's start, timed from the wait's own.
        if s.get("phase") == "cooldown" or not isinstance(t, (int, float)):
            continue
        if isinstance(tid, str) and tid in starts:
            timed.append((starts[tid] + t, tid, s))
    timed.sort(key=lambda x: x[0])
    watch = ThermalWatch()
    return [(at, tid, watch.throttling([dict(s)])["throttled"]) for at, tid, s in timed]


def segment(
    records: Sequence[TrialRecord],
    bin_s: float,
    samples: Sequence[tuple[float, bool | None]] = (),
) -> dict[str, Any] | None:
    """A cell's sustained object from the ``records`` of its segment (warm-ups left out;
    failed trials count in its time, not in its rates) and the (POSIX time, throttled) of
    their telemetry ``samples`` (:func:`judged_samples`); ``None`` without an ok trial."""
    recs = sorted(
        (r for r in records if r.started_at and not r.identity.warmup), key=lambda r: r.started_at
    )
    if not any(r.ok for r in recs):
        return None
    t0 = seconds(recs[0].started_at)
    end = max(seconds(r.finished_at) for r in recs if r.finished_at)
    out: dict[str, Any] = {
        "bin_s": bin_s,
        "trials": len(recs),
        "failed": sum(1 for r in recs if not r.ok),
        "span_s": round(end - t0, 3),
    }
    starts = [seconds(r.started_at) - t0 for r in recs]
    # Bins the segment covers at least half of (a trials-only segment covers its last one).
    last = max(0, math.ceil((end - t0) / bin_s - 0.5) - 1)
    kept = [(t, r) for t, r in zip(starts, recs, strict=True) if t // bin_s <= last]
    starts, recs = [t for t, _ in kept], [r for _, r in kept]
    by_rate = {
        rate: rate_bins(
            ((t, r.value(rate) if r.ok else None) for t, r in zip(starts, recs, strict=True)),
            bin_s,
        )
        for rate in RATES
    }
    told = [(at, flag) for at, flag in samples if flag is not None]
    throttled: dict[int, bool] = {}
    for at, flag in told:
        k = int((at - t0) // bin_s)
        throttled[k] = throttled.get(k, False) or flag
    if not told:  # no telemetry said: the records say it, per trial
        for t, r in zip(starts, recs, strict=True):
            if r.thermal.throttled is not None:
                k = int(t // bin_s)
                throttled[k] = throttled.get(k, False) or r.thermal.throttled
    counts: dict[int, int] = {}
    for t in starts:
        counts[int(t // bin_s)] = counts.get(int(t // bin_s), 0) + 1
    rates = {rate: dict(bins) for rate, bins in by_rate.items()}
    out["bins"] = [
        {
            "t_s": k * bin_s,
            "n": counts[k],
            **{rate: rates[rate].get(k) for rate in RATES},
            "throttled": throttled.get(k),
        }
        for k in sorted(counts)
    ]
    for rate in RATES:
        out[rate] = level(by_rate[rate], bin_s)
    first = next((at - t0 for at, flag in told if flag), None)
    if not told:
        first = next(
            (t for t, r in zip(starts, recs, strict=True) if r.thermal.throttled is True), None
        )
    out["first_throttled_s"] = None if first is None else round(max(first, 0.0), 3)
    out["throttle_known"] = bool(told) or any(r.thermal.throttled is not None for r in recs)
    return out


def kendall_tau(first: Sequence[float], steady: Sequence[float]) -> float | None:
    """Kendall's tau-b between two rankings of the same cells (``None`` under 2 cells, or
    when one ranking is all ties)."""
    if len(first) < 2:
        return None
    from scipy.stats import kendalltau

    tau = float(kendalltau(first, steady).statistic)
    return None if math.isnan(tau) else round(tau, 4)


def with_sustained(
    rows: Sequence[dict[str, Any]],
    records: Iterable[TrialRecord],
    telemetry: Iterable[Mapping[str, Any]],
    bin_s: float,
) -> list[dict[str, Any]]:
    """Summary rows, each with its cell's ``sustained`` object, the rank stability across
    the cells (``rank_tau``: rate -> Kendall's tau and the cells ranked) in every one."""
    records = list(records)
    cells: dict[tuple[Any, ...], list[TrialRecord]] = {}
    for r in records:
        if not r.identity.warmup:
            cells.setdefault(r.cell(), []).append(r)
    starts = {r.trial_id: seconds(r.started_at) for r in records if r.started_at}
    by_trial: dict[str, list[tuple[float, bool | None]]] = {}
    for at, tid, flag in judged_samples(starts, telemetry):
        by_trial.setdefault(tid, []).append((at, flag))
    out = []
    for row in rows:
        recs = cells.get(tuple(row.get(k) for k in CELL_KEY), [])
        timed = sorted(x for r in recs for x in by_trial.get(r.trial_id, []))
        out.append({**row, "sustained": segment(recs, bin_s, timed)})
    objects = [r["sustained"] for r in out if r["sustained"] is not None]
    tau: dict[str, Any] = {}
    for rate in RATES:
        pairs = [
            (o[rate]["burst"], o[rate]["steady"])
            for o in objects
            if o[rate]["burst"] is not None and o[rate]["steady"] is not None
        ]
        tau[rate] = {
            "kendall_tau": kendall_tau([a for a, _ in pairs], [b for _, b in pairs]),
            "cells": len(pairs),
        }
    for o in objects:
        o["rank_tau"] = tau
    return out


# --- the table ----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def sustained_table(rows: Sequence[Mapping[str, Any]]) -> Table | None:
    """Burst, steady state and their ratio per cell, the steady state's start and the first
    throttled sample; ``None`` for a run without ``[sustained]``."""
    rows = [r for r in rows if r.get("sustained")]
    if not rows:
        return None
    key, key_cols = _cells(rows, None)
    body = []
    for r in rows:
        s = r["sustained"]
        cells = [str(r[k]) for k in key] + [str(s["trials"]), _num(s["span_s"])]
        for rate in RATES:
            lv = s[rate]
            ratio = lv["burst_to_steady"]
            cells += [_num(lv["burst"]), _num(lv["steady"]), _num(ratio, 2)]
            cells.append(_num(lv["steady_from_s"]))
        throttle = s["first_throttled_s"]
        never = "never" if s["throttle_known"] else "-"
        cells.append(never if throttle is None else _num(throttle))
        body.append(tuple(cells))
    tau = rows[0]["sustained"]["rank_tau"]
    taus = ", ".join(
        f"{rate.upper()} {_num(tau[rate]['kendall_tau'], 2)}"
        for rate in RATES
        if tau[rate]["cells"] >= 2
    )
    bin_s = rows[0]["sustained"]["bin_s"]
    title = f"{TITLE} ({bin_s:g} s bins): burst = first bin, steady = from the last change point"
    if taus:
        title += f"; rank stability (Kendall's tau, first bin vs steady): {taus}"
    columns = [*key_cols, Column("trials"), Column("span s")]
    for rate in RATES:
        name = rate.upper()
        columns += [Column(f"{name} burst"), Column(f"{name} steady"), Column(f"{name} b/s")]
        columns.append(Column(f"{name} steady from s"))
    columns.append(Column("throttled at s"))
    return Table(title, tuple(columns), tuple(body))


# --- the report's figure ------------------------------------------------------------------


def run_rows(run: RunData) -> list[dict[str, Any]]:
    """A finished run's summary rows with their ``sustained`` objects (none for a run made
    without ``[sustained]``: its scenario.toml has no such table)."""
    table = run.scenario.get("sustained")
    if not isinstance(table, dict):
        return []
    bin_s = float(table.get("bin_s", SustainedTable.model_fields["bin_s"].default))
    rows = summarize(run.records, run.max_cv)
    return with_sustained(rows, run.records, run.telemetry, bin_s)


def figures(run: RunData, pyplot: Any, png: Callable[[Any], bytes], figure: Any) -> list[Any]:
    """``sustained.png``: each rate against time per cell, from its bins, the steady state
    dashed from where it starts, the bins with a throttled sample shaded."""
    rows = [r for r in run_rows(run) if r.get("sustained")]
    if not rows:
        return []
    hide = hidden_keys([[r.get(k, "") for k in RUN_KEY] for r in rows], RUN_KEY)
    fig, axes = pyplot.subplots(1, len(RATES), figsize=(6.4 * len(RATES), 3.6), squeeze=False)
    data: dict[str, Any] = {}
    for ax, rate in zip(axes[0], RATES, strict=True):
        for i, row in enumerate(rows):
            s = row["sustained"]
            label = cell_label([row.get(k) for k in RUN_KEY], RUN_KEY, hide)
            color = f"C{i % 10}"
            points = [(b["t_s"], b[rate]) for b in s["bins"] if b[rate] is not None]
            ax.plot([t for t, _ in points], [v for _, v in points], marker=".", color=color,
                    label=label)  # fmt: skip
            lv = s[rate]
            if lv["steady"] is not None and points:
                ax.hlines(lv["steady"], lv["steady_from_s"], points[-1][0], colors=color,
                          linestyles="dashed", lw=1)  # fmt: skip
            for b in s["bins"]:
                if b["throttled"]:
                    ax.axvspan(b["t_s"], b["t_s"] + s["bin_s"], color=color, alpha=0.12, lw=0)
            data.setdefault(label, s)
        ax.set_xlabel("t (s since the cell's first trial)")
        ax.set_ylabel(f"{rate.upper()} (tok/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tau = rows[0]["sustained"]["rank_tau"]
    taus = "; ".join(
        f"{rate.upper()} {tau[rate]['kendall_tau']} over {tau[rate]['cells']} cells"
        for rate in RATES
        if tau[rate]["kendall_tau"] is not None
    )
    bin_s = rows[0]["sustained"]["bin_s"]
    note = (
        f"The median rate of the trials that started in each {bin_s:g} s bin of a cell's "
        "back-to-back segment; dashed: the steady state (from the last change point of the "
        "series); shaded: bins with a throttled telemetry sample."
    )
    if taus:
        note += (
            f" Rank stability, Kendall's tau between the first bin and the steady state: {taus}."
        )
    return [figure("sustained.png", "Sustained load: rate against time", png(fig), note, data)]
