"""The typed trial record: JSON round trips, old records, and the one FIELDS table."""

from __future__ import annotations

import json
from pathlib import Path

from devicelab._record import CELL_KEY, FIELDS, TrialRecord, higher_is_better

DATA = Path(__file__).parent / "data" / "gates" / "baseline" / "trials.jsonl"


def _first() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8").splitlines()[1])


def test_a_written_record_reads_back_with_every_key_and_value():
    data = _first()
    rec = TrialRecord.from_json(data)
    out = rec.to_json()
    # Records written before quality_errors, cooldown and throttling existed get defaults.
    for key, value in data.items():
        assert out[key] == value, key
    assert out["quality_errors"] == {} and out["cooldown_s"] == 0.0 and out["throttled"] is None
    assert TrialRecord.from_json(out) == rec


def test_unknown_keys_of_a_newer_writer_survive_a_round_trip():
    data = {**_first(), "future_field": {"a": 1}}
    rec = TrialRecord.from_json(data)
    assert rec.extra == {"future_field": {"a": 1}}
    assert rec.to_json()["future_field"] == {"a": 1}
    assert rec.key("future_field") == {"a": 1}


def test_typed_access_values_and_cell():
    rec = TrialRecord.from_json(_first())
    assert rec.measured and rec.identity.task == "SUMM"
    assert rec.value("itps") == rec.measures.itps
    assert rec.value("max_temp_c") is None  # null on a host without sensors
    assert rec.value("quality.missing") is None
    # A record written before variants existed reads with an empty one.
    assert rec.cell() == tuple(_first().get(k, "") for k in CELL_KEY)
    assert rec.identity.variant == "" and "variant" not in _first()
    assert rec.key("status") == "ok" and rec.key("context_tokens") == 100
    failed = rec.failed("boom")
    assert not failed.measured and failed.error == "boom" and rec.ok


def test_warmups_do_not_count_as_measured():
    data = json.loads(DATA.read_text(encoding="utf-8").splitlines()[0])
    assert data["warmup"] and not TrialRecord.from_json(data).measured


def test_fields_are_record_measures_with_a_direction():
    names = [f.name for f in FIELDS]
    assert len(names) == len(set(names))
    blank = TrialRecord.from_json(_first()).to_json()
    for f in FIELDS:
        assert f.name in blank, f.name
        assert f.stat in {"median", "max", "mean", "min"}
    assert higher_is_better("otps") and not higher_is_better("ttft_s")
    assert higher_is_better("quality.rouge1") and not higher_is_better("quality.self_bleu")
