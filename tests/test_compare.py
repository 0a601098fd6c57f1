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


def _run(tmp_path: Path, name: str, otps: list[float], toml: str | None = None) -> Path:
    """A run directory of one cell (SUMM, L=100) with these OTPS values; the last trial is
    noisy when ``name`` says so. ``toml``: its scenario.toml (none: a run made before it)."""
    out = tmp_path / name
    out.mkdir()
    base = {
        "status": "ok", "warmup": False, "device": "host", "model": "m", "quant": "q",
        "task": "SUMM", "context_tokens": 100, "itps": 50.0, "ttft_s": 1.0,
    }  # fmt: skip
    recs = [{**base, "trial_id": f"t{i}", "otps": v} for i, v in enumerate(otps)]
    if "noisy" in name:
        recs[-1]["noisy"] = True
    (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if toml is not None:
        (out / "scenario.toml").write_text(toml)
    return out


def test_compare_carries_the_spread_and_marks_unstable_sides(tmp_path: Path) -> None:
    old = load_run(_run(tmp_path, "old", [20.0, 10.0, 14.0, 12.0]))
    lenient = load_run(
        _run(tmp_path, "lenient", [20.0, 10.0, 14.0, 12.0], '[scenario]\nname = "x"\nmax_cv = 50\n')
    )
    noisy = load_run(_run(tmp_path, "noisy", [10.0, 10.0, 10.0, 10.0]))
    assert old.max_cv == 10.0 and lenient.max_cv == 50.0  # an old run takes the default

    otps = next(r for r in compare_runs(old, noisy) if r.metric == "otps")
    assert (otps.p25_a, otps.p75_a) == pytest.approx((11.5, 15.5))
    assert otps.cv_pct_a == pytest.approx(30.860, abs=1e-3)
    assert (otps.p25_b, otps.p75_b, otps.cv_pct_b) == (10.0, 10.0, 0.0)
    assert otps.unstable_a == ["CV > 10%: OTPS"]
    assert otps.unstable_b == ["1 noisy trial"]
    ttft = next(r for r in compare_runs(old, noisy) if r.metric == "ttft_s")
    assert ttft.unstable_a == [] and ttft.unstable_b == ["1 noisy trial"]

    otps = next(r for r in compare_runs(lenient, noisy) if r.metric == "otps")
    assert otps.unstable_a == []  # the same CV is within that run's own max_cv


def test_cli_compare_shows_the_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path, "a", [20.0, 10.0, 14.0, 12.0])
    b = _run(tmp_path, "b", [60.0, 62.0, 63.0])
    assert run_cli(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "13.000 ±30.9% !" in out and "11.500–15.500" in out
    assert "62.000 ±2.5%" in out and "61.000–62.500" in out
    assert "! unstable in that run" in out
    assert run_cli(["compare", str(a), str(b), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    otps = next(r for r in rows if r["metric"] == "otps")
    assert otps["p25_b"] == 61.0 and otps["unstable_a"] == ["CV > 10%: OTPS"]
    assert otps["unstable_b"] == []
