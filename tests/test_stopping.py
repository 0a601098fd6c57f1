"""The stopping rule of adaptive repetitions, on synthetic samples with known answers."""

from __future__ import annotations

import math

import pytest

from devicelab._record import CELL_KEY, RUN_KEY, TrialRecord
from devicelab._stopping import (
    MIN_VALUES,
    Rule,
    Stop,
    ci_pct,
    decide,
    median_ci,
    median_ci_ranks,
    with_stops,
)


def test_order_statistic_ranks_match_the_binomial_by_hand() -> None:
    # Below the median lie B ~ Binomial(n, 1/2) values; [x(k), x(n+1-k)] misses it with
    # probability 2 P(B <= k-1), which must stay at or below 5 %.
    assert median_ci_ranks(5) is None  # 2 * (1/32) = 6.25 % > 5 %: no 95 % interval at all
    assert median_ci_ranks(6) == 1  # 2 * (1/64) = 3.1 %
    assert median_ci_ranks(8) == 1  # k=2 would miss 2 * 9/256 = 7.0 %
    assert median_ci_ranks(9) == 2  # 2 * 10/512 = 3.9 %
    assert median_ci_ranks(15) == 4  # 2 * 576/32768 = 3.5 %; k=5 would miss 11.8 %
    assert median_ci_ranks(20) == 6  # 2 * 21700/2**20 = 4.1 %; k=7 would miss 11.5 %
    assert MIN_VALUES == 6


def test_interval_bounds_are_the_order_statistics() -> None:
    values = [7.0, 3.0, 9.0, 1.0, 5.0, 10.0, 2.0, 8.0, 4.0, 6.0]  # 1..10, shuffled
    assert median_ci(values) == (2.0, 9.0)  # ranks 2 and 9 of 10
    assert median_ci(values[:5]) is None
    assert median_ci([float(v) for v in range(1, 16)]) == (4.0, 12.0)
    # median 5.5; the interval reaches 3.5 below it and 3.5 above: 63.6 %
    assert ci_pct(values) == pytest.approx(100 * 3.5 / 5.5)
    # Not symmetric: the larger side counts.
    assert ci_pct([100.0, 100.0, 100.0, 100.0, 100.0, 130.0]) == pytest.approx(30.0)
    assert ci_pct([4.0] * 6) == 0.0
    assert ci_pct([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]) == pytest.approx(100.0)  # [0, 1] around 0.5
    assert ci_pct([-1.0, 0.0, 0.0, 0.0, 0.0, 1.0]) == math.inf


def _rec(rep: int, status: str = "ok", **values: float | None) -> TrialRecord:
    base: dict[str, object] = {
        "trial_id": f"c/r{rep}", "model": "m", "quant": "q", "task": "SUMM",
        "context_tokens": 100, "repetition": rep, "status": status, "warmup": False,
    }  # fmt: skip
    base.update(values)
    return TrialRecord.from_json(base)


def _run(series: list[float], rule: Rule, field: str = "otps") -> Stop:
    """Feed ``series`` one repetition at a time, as a schedule does, until the rule stops."""
    for k in range(1, len(series) + 1):
        stop = decide([_rec(i, **{field: series[i]}) for i in range(k)], k, rule)
        if stop is not None:
            return stop
    raise AssertionError("the rule never stopped")


def test_a_tight_series_stops_as_soon_as_it_has_an_interval() -> None:
    tight = [50.0, 50.4, 49.8, 50.1, 49.9, 50.2, 50.0, 50.3, 49.7, 50.1]
    stop = _run(tight, Rule(min_repetitions=3, max_repetitions=10, target_ci_pct=5.0))
    # 6 values: the interval is [min, max] = [49.8, 50.4] around the median 50.05: ±0.7 %.
    assert stop == Stop(6, "ci ±0.7% <= 5% after 6 (otps)", "target")
    assert stop.converged
    # min_repetitions above 6 holds it back.
    assert _run(tight, Rule(8, 10, 5.0)).repetitions == 8


def test_a_wide_series_runs_to_the_maximum_and_says_how_wide() -> None:
    wide = [40.0, 60.0] * 6
    stop = _run(wide, Rule(min_repetitions=3, max_repetitions=10, target_ci_pct=5.0))
    # 10 values: ranks 2 and 9 of [40 x5, 60 x5] are 40 and 60 around the median 50: ±20 %.
    assert stop == Stop(10, "max_repetitions 10, ci ±20.0% (otps)", "max")
    assert not stop.converged


def test_the_widest_deciding_field_decides() -> None:
    rule = Rule(3, 8, 5.0)
    recs = [_rec(i, otps=50.0 + 0.1 * i, ttft_s=1.0 + 0.2 * (i % 2)) for i in range(6)]
    stop = decide(recs, 6, rule)
    assert stop is None  # otps is within 0.5 %, but TTFT's [1.0, 1.2] is ±9.1 % of 1.1
    # Deciding by otps alone, the same trials stop.
    only = decide(recs, 6, Rule(3, 8, 5.0, metrics=("otps",)))
    assert only is not None and only.reason.endswith("after 6 (otps)")
    # A field no trial measured (energy on the host) is left out, not waited for.
    assert decide(recs, 6, Rule(3, 8, 5.0, metrics=("otps", "energy_j"))) == only


def test_failed_trials_give_no_value_and_an_all_failed_cell_stops_at_the_minimum() -> None:
    rule = Rule(3, 10, 5.0)
    # Every other trial failed: 6 repetitions give 3 values, too few for an interval.
    recs = [_rec(i, otps=50.0) if i % 2 else _rec(i, "failed") for i in range(10)]
    assert decide(recs[:6], 6, rule) is None
    stop = decide(recs, 10, rule)
    assert stop is not None and stop.reason == (
        "max_repetitions 10, 5 values, too few for a 95% ci (it needs 6) (otps)"
    )
    failed = [_rec(i, "failed") for i in range(3)]
    assert decide(failed[:2], 2, rule) is None  # below the minimum nothing stops
    assert decide(failed, 3, rule) == Stop(3, "every trial failed (3 repetitions)", "failed")


def test_warm_ups_do_not_count() -> None:
    recs = [_rec(i, otps=50.0) for i in range(5)]
    warm = TrialRecord.from_json({**_rec(9, otps=50.0).to_json(), "warmup": True})
    assert decide([*recs, warm], 5, Rule(3, 10, 5.0)) is None  # 5 values, not 6


def test_summary_rows_say_why_their_cell_stopped() -> None:
    cell = {**dict.fromkeys(CELL_KEY, ""), "device": "host", "model": "m", "context_tokens": 100}
    rows = [{**cell, "task": "SUMM"}, {**cell, "task": "QA"}]
    summ = tuple(rows[0][k] for k in RUN_KEY)  # as the schedule keys a cell
    stops = {summ: Stop(6, "ci ±0.7% <= 5% after 6 (otps)", "target")}
    out = with_stops(rows, stops)
    assert [r["stopped"] for r in out] == ["ci ±0.7% <= 5% after 6 (otps)", None]
    assert "stopped" not in rows[0]  # the rows given are left as they were
