"""devicelab.load_run and Run: the test-facing API for custom gates."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import devicelab
from devicelab._errors import RunDirError, UsageError

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
