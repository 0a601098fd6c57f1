"""The run directory: writing it (RunDir: append, resume, refuse another run's directory)
and reading it back (devicelab.load_run and RunData, the test-facing API for custom gates)."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

import devicelab
from devicelab import Identity, TrialRecord
from devicelab._errors import RunDirError, UsageError
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


# --- reading: load_run and RunData ---------------------------------------------------------

GATES = Path(__file__).parent / "data" / "gates"


def raw(name: str) -> list[dict]:
    lines = (GATES / name / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def run() -> devicelab.RunData:
    return devicelab.load_run(GATES / "baseline")


def test_measured_trials_only(run: devicelab.RunData) -> None:
    records = raw("baseline")
    assert any(r["warmup"] for r in records)
    assert len(run.measured) == sum(1 for r in records if not r["warmup"]) == 12
    assert len(run.records) == len(records)  # every trial is read; the queries use measured
    assert len(run.values("otps")) == 12


def test_median_with_filters(run: devicelab.RunData) -> None:
    want = statistics.median(
        r["ttft_s"] for r in raw("baseline") if r["task"] == "SUMM" and not r["warmup"]
    )
    assert run.median("ttft_s", task="SUMM", context_tokens=100) == pytest.approx(want)
    assert run.median("ttft_s", task="SUMM") == pytest.approx(want)
    assert len(run.values("otps", task="QA", model="smollm2-135m-instruct", quant="q4_1")) == 6
    assert run.max("peak_mem_mb") == max(r["peak_mem_mb"] for r in raw("baseline")[1:])
    assert run.min("otps", task="QA") <= run.mean("otps", task="QA") <= run.max("otps", task="QA")


def test_failed_trials_are_left_out(tmp_path: Path) -> None:
    records = raw("baseline")
    records[1] = dict(records[1], status="error", otps=1e9)
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = devicelab.load_run(tmp_path)
    assert len(run.values("otps")) == 11
    assert 1e9 not in run.values("otps")


def test_keys_and_fingerprint(run: devicelab.RunData) -> None:
    keys = run.keys()
    assert [(k.model, k.quant, k.task, k.context_tokens) for k in keys] == [
        ("smollm2-135m-instruct", "q4_1", "QA", 100),
        ("smollm2-135m-instruct", "q4_1", "SUMM", 100),
    ]
    assert run.fingerprint == raw("baseline")[0]["device_info"]
    assert run.fingerprint["kind"] == "host"
    assert json.loads(keys[0].fingerprint) == run.fingerprint


def test_filter_matching_nothing_names_what_exists(run: devicelab.RunData) -> None:
    with pytest.raises(UsageError, match=r"context_tokens=1000.*Values present: 100"):
        run.median("ttft_s", task="SUMM", context_tokens=1000)
    with pytest.raises(UsageError, match=r"task='KW'.*'QA', 'SUMM'"):
        run.values("otps", task="KW")
    with pytest.raises(UsageError, match="no trial record has the key 'colour'"):
        run.values("otps", colour="red")


def test_unknown_metric_and_null_metric(run: devicelab.RunData) -> None:
    with pytest.raises(UsageError, match=r"unknown metric 'tps'.*otps"):
        run.median("tps")
    assert run.values("max_temp_c") == []  # no sensors on this host: null, never a guess
    with pytest.raises(UsageError, match="max_temp_c is null in every measured trial"):
        run.median("max_temp_c", task="QA")
    assert run.values("quality.rouge") == []


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="is not a directory"):
        devicelab.load_run(tmp_path / "missing")
    with pytest.raises(RunDirError, match=r"has no trials\.jsonl"):
        devicelab.load_run(tmp_path)
    assert issubclass(RunDirError, UsageError)


def test_max_cv_comes_from_the_runs_scenario_or_the_default(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "trials.jsonl").write_text((GATES / "baseline" / "trials.jsonl").read_text())
    assert devicelab.load_run(run_dir).max_cv == 10.0  # no scenario.toml: a hand-made run
    (run_dir / "scenario.toml").write_text('[scenario]\nname = "old"\nrepetitions = 3\n')
    assert devicelab.load_run(run_dir).max_cv == 10.0  # made before max_cv existed
    (run_dir / "scenario.toml").write_text('[scenario]\nname = "new"\nmax_cv = 25\n')
    assert devicelab.load_run(run_dir).max_cv == 25.0
    (run_dir / "scenario.toml").write_text('[scenario]\nmax_cv = "high"\n')
    with pytest.raises(RunDirError, match="max_cv is 'high'; it must be a number"):
        _ = devicelab.load_run(run_dir).max_cv
