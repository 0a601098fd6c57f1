"""The cold-prefill verdict and the client/engine rate gap, on cases with known answers."""

from __future__ import annotations

import pytest

from devicelab import Identity, Measures, TrialRecord
from devicelab._prefill import GAP_FLAG, client_engine_gap, flagged_gaps, prefix_cached, run_notes


def test_a_shortfall_of_prefilled_tokens_means_a_cached_prefix() -> None:
    # The real MLC-LLM run: 1 of 178 prompt tokens prefilled, the rest from its radix cache.
    assert prefix_cached(178, 1) is True
    assert prefix_cached(178, 177) is True
    assert prefix_cached(178, 178) is False
    # An engine that counts more (a start token it adds itself) has cached nothing.
    assert prefix_cached(178, 179) is False


def test_the_engine_count_decides_even_with_a_buster() -> None:
    assert prefix_cached(200, 20, cache_buster_tokens=4) is True
    assert prefix_cached(200, 200, cache_buster_tokens=4) is False


def test_without_an_engine_count_only_a_buster_proves_a_cold_prefill() -> None:
    assert prefix_cached(178, None) is None
    assert prefix_cached(178, None, cache_buster_tokens=0) is None
    assert prefix_cached(178, None, cache_buster_tokens=3) is False


def test_negative_counts_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="prefilled_tokens"):
        prefix_cached(10, -1)
    with pytest.raises(ValueError, match="input_tokens"):
        prefix_cached(-1, 5)
    with pytest.raises(ValueError, match="cache_buster_tokens"):
        prefix_cached(10, None, -2)


def test_client_engine_gap_is_relative_to_the_engine_rate() -> None:
    # The MLC run: client ITPS 250 tok/s against MLC's prefill 2.5 tok/s (100x), client OTPS
    # 4.6 against MLC's decode 4.0 (15 % apart).
    gaps = client_engine_gap(250.0, 4.6, 2.5, 4.0)
    assert gaps["itps"] == pytest.approx(99.0)
    assert gaps["otps"] == pytest.approx(0.15)
    assert flagged_gaps(gaps) == ["itps", "otps"]
    slower = client_engine_gap(90.0, 3.8, 100.0, 4.0)
    assert slower["itps"] == pytest.approx(-0.10) and slower["otps"] == pytest.approx(-0.05)
    assert flagged_gaps(slower) == []  # exactly 10 % is not above the threshold
    assert GAP_FLAG == 0.10


def test_a_missing_or_zero_rate_gives_no_gap() -> None:
    assert client_engine_gap(None, 4.0, 100.0, None) == {"itps": None, "otps": None}
    assert client_engine_gap(50.0, 4.0, 0.0, 4.0) == {"itps": None, "otps": 0.0}
    assert flagged_gaps({"itps": None, "otps": 0.0}) == []


def _rec(prefix_cached: bool | None, gap: dict[str, float | None]) -> TrialRecord:
    who = Identity("r", "t", "host", "e", "m", "q", "SUMM", "d", "i", 10, 1, 0, False)
    return TrialRecord(who, measures=Measures(prefix_cached=prefix_cached, client_engine_gap=gap))


def test_run_notes_count_unproven_prefills_and_stray_rates():
    proven = _rec(False, {"itps": 0.02, "otps": -0.05})
    assert run_notes([proven, proven]) == []
    notes = run_notes([proven, _rec(None, {}), _rec(False, {"itps": 0.5, "otps": None})])
    assert len(notes) == 2
    assert notes[0].startswith("1 of 3 measured trials could not prove a cold prefill")
    assert notes[1].startswith("1 of 3 measured trials have client ITPS or OTPS more than 10%")
