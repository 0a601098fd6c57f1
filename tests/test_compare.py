from __future__ import annotations

import json
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab import load_run
from devicelab._compare import compare_runs

DATA = Path(__file__).parent / "data" / "gates"


def test_slower10_is_worse_and_significant() -> None:
    rows = compare_runs(load_run(DATA / "baseline"), load_run(DATA / "slower10"))
    assert {(r.task, r.context_tokens) for r in rows} == {("SUMM", 100), ("QA", 100)}
    assert len(rows) == 2 * 5
    for r in rows:
        if r.metric in ("itps", "otps", "ttft_s", "runtime_s"):
            assert r.verdict == "worse" and r.p_value == pytest.approx(1 / 924)
            assert r.significant and r.note == ""
            assert r.delta_pct == pytest.approx(
                -10.0 if r.metric in ("itps", "otps") else 100 / 9, abs=0.01
            )
    otps = next(r for r in rows if r.metric == "otps" and r.task == "SUMM")
    assert otps.median_b == pytest.approx(otps.median_a * 0.9, rel=1e-4)
    assert otps.delta == pytest.approx(otps.median_b - otps.median_a)


def test_reversed_is_better() -> None:
    rows = compare_runs(load_run(DATA / "slower10"), load_run(DATA / "baseline"))
    otps = [r for r in rows if r.metric == "otps"]
    assert all(r.verdict == "better" and r.p_value == pytest.approx(1 / 924) for r in otps)


def test_reps3_is_marked_n_below_5() -> None:
    rows = compare_runs(load_run(DATA / "baseline"), load_run(DATA / "reps3"))
    assert rows and all(r.note == "n<5" and not r.significant for r in rows)
    assert {(r.n_a, r.n_b) for r in rows} == {(6, 3)}


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["compare", str(DATA / "baseline"), str(DATA / "reps3")]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct/q4_1/SUMM L=100" in out and "QA L=100" in out
    assert "(n<5)" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["compare", str(DATA / "baseline"), str(DATA / "slower10"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    otps = [r for r in rows if r["metric"] == "otps"]
    assert len(otps) == 2
    assert all(r["verdict"] == "worse" and r["significant"] for r in otps)
    assert otps[0]["p_value"] == pytest.approx(1 / 924)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["compare", str(DATA / "baseline"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "trials.jsonl" in err and "Traceback" not in err
