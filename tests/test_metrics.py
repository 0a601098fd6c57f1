from __future__ import annotations

import pytest

from devicelab._metrics import speed, spread, summarize, unstable_line
from devicelab._record import TrialRecord


def test_speed_matches_the_contract_definitions() -> None:
    # sent at 10.0; first token at 10.5; 5 tokens, the last at 11.5
    s = speed(10.0, [10.5, 10.75, 11.0, 11.25, 11.5], input_tokens=200, output_tokens=5)
    assert s.ttft_s == pytest.approx(0.5)
    assert s.itps == pytest.approx(400.0)  # 200 tokens / 0.5 s
    assert s.otps == pytest.approx(4.0)  # (5 - 1) tokens / 1.0 s
    assert s.runtime_s == pytest.approx(1.5)


def test_speed_without_enough_tokens_gives_none_not_a_guess() -> None:
    assert speed(0.0, [], 10, 0).ttft_s is None
    one = speed(0.0, [0.25], 10, 1)
    assert one.ttft_s == pytest.approx(0.25) and one.otps is None
    assert one.runtime_s == pytest.approx(0.25)


def _rec(**kw: object) -> TrialRecord:
    base: dict[str, object] = {
        "device": "host", "model": "m", "quant": "q", "task": "SUMM", "context_tokens": 200,
        "status": "ok", "warmup": False, "itps": 100.0, "otps": 10.0, "ttft_s": 1.0,
        "runtime_s": 2.0, "peak_mem_mb": 50.0, "max_temp_c": None,
    }  # fmt: skip
    base.update(kw)
    return TrialRecord.from_json(base)


def test_summary_takes_medians_and_leaves_out_warmups_and_failures() -> None:
    rows = summarize(
        [
            _rec(itps=100.0, peak_mem_mb=50.0),
            _rec(itps=300.0, peak_mem_mb=70.0),
            _rec(itps=200.0, peak_mem_mb=60.0),
            _rec(itps=9999.0, warmup=True),
            _rec(itps=9999.0, status="failed"),
            _rec(context_tokens=400, itps=50.0),
        ]
    )
    assert [(r["context_tokens"], r["n"]) for r in rows] == [(200, 3), (400, 1)]
    assert rows[0]["itps"] == 200.0
    assert rows[0]["peak_mem_mb"] == 70.0
    assert rows[0]["max_temp_c"] is None


def test_load_time_is_summarised_with_the_warm_up_that_carries_it() -> None:
    rows = summarize(
        [_rec(load_s=0.8, itps=9999.0, warmup=True), _rec(load_s=0.0), _rec(load_s=0.0)]
    )
    assert rows[0]["n"] == 2 and rows[0]["itps"] == 100.0  # the warm-up's speed left out
    assert rows[0]["load_s"] == 0.8
    only_warmup = summarize([_rec(load_s=0.8, warmup=True)])
    assert only_warmup == []  # no measured trial: no row


def test_spread_of_known_samples() -> None:
    # Inclusive quartiles of 10, 12, 14, 20: positions 0.75 and 2.25 of 0..3, so
    # p25 = 10 + 0.75 * 2 = 11.5 and p75 = 14 + 0.25 * 6 = 15.5. Mean 14, sample variance
    # (16 + 4 + 0 + 36) / 3 = 56/3, so CV = sqrt(56/3) / 14 = 30.86 %.
    s = spread([20.0, 10.0, 14.0, 12.0])
    assert s is not None
    assert (s.p25, s.p75) == pytest.approx((11.5, 15.5))
    assert s.cv_pct == pytest.approx(30.860, abs=1e-3)
    # 60, 62, 63: p25 = 61, p75 = 62.5; mean 61.667, sample sd sqrt(7/3) = 1.5275: CV 2.477 %.
    s = spread([60.0, 62.0, 63.0])
    assert s is not None
    assert (s.p25, s.p75) == pytest.approx((61.0, 62.5))
    assert s.cv_pct == pytest.approx(2.477, abs=1e-3)
    one = spread([5.0])
    assert one is not None and (one.p25, one.p75, one.cv_pct) == (5.0, 5.0, None)
    assert spread([]) is None
    zero = spread([0.0, 0.0])
    assert zero is not None and zero.cv_pct is None  # a CV of a zero mean is no number


def test_summary_rows_carry_the_spread_of_median_fields_only() -> None:
    rows = summarize([_rec(otps=v, peak_mem_mb=50.0 + v) for v in (20.0, 10.0, 14.0, 12.0)])
    row = rows[0]
    assert row["otps"] == 13.0
    assert row["spread"]["otps"] == pytest.approx(
        {"p25": 11.5, "p75": 15.5, "cv_pct": 30.860}, abs=1e-3
    )
    assert row["spread"]["itps"] == {"p25": 100.0, "p75": 100.0, "cv_pct": 0.0}
    # A max field is a bound, not a typical value: it has no spread.
    assert "peak_mem_mb" not in row["spread"] and "load_s" not in row["spread"]
    assert row["spread"]["energy_j"] is None  # a median field nobody reported
    assert row["unstable"] is True
    assert row["unstable_reasons"] == ["CV > 10%: OTPS"]


def test_unstable_by_cv_follows_max_cv() -> None:
    recs = [_rec(otps=v) for v in (20.0, 10.0, 14.0, 12.0)]
    assert summarize(recs, max_cv=30.0)[0]["unstable_reasons"] == ["CV > 30%: OTPS"]
    calm = summarize(recs, max_cv=31.0)[0]
    assert calm["unstable"] is False and calm["unstable_reasons"] == []
    both = [_rec(otps=v, itps=10 * v) for v in (20.0, 10.0, 14.0, 12.0)]
    assert summarize(both)[0]["unstable_reasons"] == ["CV > 10%: ITPS, OTPS"]
    # A max field's variation never makes a cell unstable.
    mem = summarize([_rec(peak_mem_mb=v) for v in (10.0, 100.0, 1000.0)])[0]
    assert mem["unstable"] is False


def test_a_noisy_trial_makes_its_cell_unstable() -> None:
    steady = [_rec(otps=10.0), _rec(otps=10.0), _rec(otps=10.0)]
    assert summarize(steady)[0]["unstable"] is False
    rows = summarize([*steady, _rec(otps=10.0, noisy=True), _rec(context_tokens=400)])
    assert rows[0]["unstable"] is True and rows[0]["unstable_reasons"] == ["1 noisy trial"]
    assert rows[1]["unstable"] is False  # the other cell's trial was quiet
    # noisy: false (or a noisy warm-up, or a noisy failure) does not count.
    rows = summarize(
        [
            *steady,
            _rec(noisy=False),
            _rec(noisy=True, warmup=True),
            _rec(noisy=True, status="failed"),
        ]
    )
    assert rows[0]["unstable"] is False


def test_the_unstable_line_counts_cells_and_says_what_to_do() -> None:
    recs = [_rec(otps=v) for v in (20.0, 10.0, 14.0, 12.0)]
    recs += [_rec(context_tokens=400, otps=v) for v in (10.0, 10.1, 9.9)]
    rows = summarize(recs)
    line = unstable_line(rows)
    assert line.startswith("1 of 2 cells are unstable (CV above max_cv 10%")
    assert "repetitions" in line and "quieten the device" in line and '"auto"' in line
    assert unstable_line(summarize(recs, 50.0), 50.0) == (
        "all 2 cells are stable (CV at most 50%, no noisy trials)."
    )
    assert "one measured trial each" in unstable_line(summarize(recs[:1]))
    mixed = summarize([*recs[4:], _rec(context_tokens=800)])
    assert unstable_line(mixed) == (
        "1 of 2 cells are stable (CV at most 10%, no noisy trials); 1 has a single measured "
        "trial, so its spread is unknown."
    )
