from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from devicelab import Identity, TrialRecord
from devicelab._errors import RunDirError
from devicelab._rundir import TELEMETRY, TRIALS, RunDir, load_run, read_jsonl
from devicelab._scenario import load_scenario


def _record(trial_id: str) -> TrialRecord:
    who = Identity("r", trial_id, "host", "words", "m", "q", "SUMM", "d", "i", 10, 1, 0, False)
    return TrialRecord(who)


def test_append_is_durable_and_resume_reads_back(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    sc = load_scenario(words_scenario())
    out = tmp_path / "run"
    run = RunDir.open(out, sc, resume=False)
    run.append_trial(_record("a"))
    # Readable before close: a crash right now keeps the record.
    assert [r["trial_id"] for r in read_jsonl(out / TRIALS)] == ["a"]
    run.close()
    again = RunDir.open(out, sc, resume=True)
    assert again.run_id == run.run_id
    assert again.done_trial_ids() == {"a"}
    again.close()


def test_torn_last_line_is_cut_on_resume(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    sc = load_scenario(words_scenario())
    out = tmp_path / "run"
    RunDir.open(out, sc, resume=False).close()
    (out / TRIALS).write_text('{"trial_id": "a"}\n{"trial_id": "b", "sta', encoding="utf-8")
    run = RunDir.open(out, sc, resume=True)
    run.append_trial(_record("c"))
    run.close()
    assert [r["trial_id"] for r in read_jsonl(out / TRIALS)] == ["a", "c"]


def test_existing_run_needs_resume_and_a_different_run_is_refused(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    path = words_scenario()
    out = tmp_path / "run"
    RunDir.open(out, load_scenario(path), resume=False).close()
    with pytest.raises(RunDirError, match="--resume"):
        RunDir.open(out, load_scenario(path), resume=False)
    path.write_text(path.read_text().replace("repetitions = 2", "repetitions = 5"))
    with pytest.raises(RunDirError, match="holds a different run"):
        RunDir.open(out, load_scenario(path), resume=True)


def test_non_run_directory_is_left_alone(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"...")
    with pytest.raises(RunDirError, match="not a devicelab run"):
        RunDir.open(out, load_scenario(words_scenario()), resume=False)
    assert [p.name for p in out.iterdir()] == ["cat.jpg"]


def test_the_reader_reads_every_record_the_writer_wrote(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run = RunDir.open(out, load_scenario(words_scenario()), resume=False)
    warm = TrialRecord.from_json({"trial_id": "w", "status": "ok", "warmup": True, "itps": 1.0})
    ok = TrialRecord.from_json({"trial_id": "a", "status": "ok", "itps": 5.0, "device": "host"})
    bad = ok.but(identity=dataclasses.replace(ok.identity, trial_id="b")).failed("boom")
    for rec in (warm, ok, bad):
        run.append_trial(rec)
    run.close()
    data = load_run(out)
    assert data.records == [warm, ok, bad]  # all of them, as written
    assert data.measured == [ok]
    assert data.meta["run_id"] == run.run_id
    assert data.values("itps") == [5.0]


def test_telemetry_is_read_only_when_asked_for(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run = RunDir.open(out, load_scenario(words_scenario()), resume=False)
    run.append_trial(TrialRecord.from_json({"trial_id": "a", "status": "ok", "itps": 5.0}))
    run.append_samples([{"trial_id": "a", "t": 0.0, "temp_c": 30.0}])
    run.close()
    data = load_run(out)
    assert data.telemetry == [{"trial_id": "a", "t": 0.0, "temp_c": 30.0}]
    # A broken telemetry file does not stop a gate that only reads the trials.
    (out / TELEMETRY).write_text('{"trial_id": "a", "t": }\n', encoding="utf-8")
    data = load_run(out)
    assert data.median("itps") == 5.0
    with pytest.raises(RunDirError, match=r"telemetry\.jsonl is unreadable"):
        _ = data.telemetry
