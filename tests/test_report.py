from __future__ import annotations

import base64
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab import load_run
from devicelab._report import build_report, pick_timeline_trials
from devicelab.testing import make_scenario, run_scenario

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small run on the host: SUMM and QA, L 50 and 100, 2 repetitions, 4 tokens."""
    base = tmp_path_factory.mktemp("report")
    scenario = make_scenario(
        base,
        kinds=["SUMM", "QA"],
        lengths=[50, 100],
        sections=2,
        repetitions=2,
        max_output_tokens=4,
    )
    out = base / "run"
    records = run_scenario(scenario, out=out)
    assert all(r["status"] == "ok" for r in records)
    return out


@pytest.mark.e2e
def test_cli_report_writes_html_with_embedded_pngs(
    real_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    assert run_cli(["report", str(real_run), "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["memory.png", "speed.png", "timelines.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert base64.b64encode(data).decode("ascii") in html  # embedded: one file is enough
    for task in ("SUMM", "QA"):
        for length in (50, 100):
            assert f"<td>{task}</td><td>{length}</td>" in html
    assert "<th>format_ok</th><th>intent_ok</th>" in html  # DocAssist's own metrics
    assert "unknown" in html  # the host reports no throttling state
    assert "longest context length (L=100)" in html


@pytest.mark.e2e
def test_default_out_dir_and_timeline_cap(real_run: Path) -> None:
    rep = build_report(real_run, cap=2)
    assert rep.html_path == real_run / "report" / "report.html"
    timelines = next(f for f in rep.figures if f.name == "timelines.png")
    assert "the first 2 of 4 shown" in timelines.note
    trials, _ = pick_timeline_trials(load_run(real_run).measured, cap=10)
    assert {t.identity.context_tokens for t in trials} == {100} and len(trials) == 4


def test_throttled_rows_and_quality_flagged(tmp_path: Path) -> None:
    import json

    run = tmp_path / "run"
    run.mkdir()
    base = {
        "status": "ok", "warmup": False, "device": "phone", "model": "m", "quant": "q4",
        "task": "QA", "context_tokens": 100, "itps": 10.0, "otps": 5.0, "ttft_s": 1.0,
        "runtime_s": 2.0, "peak_mem_mb": 300.0, "trial_id": "t",
    }  # fmt: skip
    recs = [
        {**base, "throttled": True, "quality": {"f1": 0.5}},
        {**base, "throttled": False, "quality": {"f1": 1.0}},
    ]
    (run / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = build_report(run)
    html = rep.html_path.read_text(encoding="utf-8")
    assert '<tr class="flag">' in html and "<td>1/2</td>" in html
    assert "<th>f1</th>" in html and "<td>0.750</td>" in html
    assert [f.name for f in rep.figures] == ["speed.png", "memory.png"]  # no telemetry


def test_bad_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "Traceback" not in err
