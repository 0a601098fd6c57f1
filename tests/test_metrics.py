from __future__ import annotations

import pytest

from devicelab._metrics import speed, summarize
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
