from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

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
    # Four output tokens: ITLs and the rate by position, too few for quarter rates.
    assert pngs == [
        "decode_position.png",
        "itl.png",
        "itl_cdf.png",
        "memory.png",
        "speed.png",
        "timelines.png",
    ]
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


def _spread_run(tmp_path: Path) -> Path:
    """SUMM at L=100 with OTPS 20, 10, 14, 12 (median 13, p25 11.5, p75 15.5, CV 30.9 %) and
    at L=200 with OTPS 60, 62, 63 (median 62, p25 61, p75 62.5, CV 2.5 %)."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    base = {
        "status": "ok", "warmup": False, "device": "host", "model": "m", "quant": "q4",
        "task": "SUMM", "itps": 10.0, "ttft_s": 1.0, "runtime_s": 2.0,
    }  # fmt: skip
    recs = [
        {**base, "trial_id": f"a{i}", "context_tokens": 100, "otps": v, "peak_mem_mb": 300.0 + i}
        for i, v in enumerate((20.0, 10.0, 14.0, 12.0))
    ]
    recs += [
        {**base, "trial_id": f"b{i}", "context_tokens": 200, "otps": v, "peak_mem_mb": 400.0}
        for i, v in enumerate((60.0, 62.0, 63.0))
    ]
    (run / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def _figure_data(html: str, name: str) -> dict[str, Any]:
    import json
    import re

    found = re.search(
        rf'<script type="application/json" class="figure-data" data-figure="{name}">(.*?)</script>',
        html,
    )
    assert found, f"no figure data for {name}"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_figures_draw_error_bars_from_p25_to_p75(tmp_path: Path) -> None:
    rep = build_report(_spread_run(tmp_path))
    html = rep.html_path.read_text(encoding="utf-8")
    otps = _figure_data(html, "speed.png")["otps"]["SUMM"]["m/q4"]
    assert otps == [
        {"length": 100, "value": 13.0, "p25": 11.5, "p75": 15.5},
        {"length": 200, "value": 62.0, "p25": 61.0, "p75": 62.5},
    ]
    # Peak memory is a maximum: a plain line, no bars.
    mem = _figure_data(html, "memory.png")["peak_mem_mb"]["SUMM"]["m/q4"]
    assert mem[0] == {"length": 100, "value": 303.0, "p25": None, "p75": None}
    speed = next(f for f in rep.figures if f.name == "speed.png")
    assert "Error bars: p25 to p75" in speed.note


def test_the_drawn_bars_are_the_quartiles(tmp_path: Path) -> None:
    from matplotlib.container import ErrorbarContainer

    from devicelab._record import FIELD_BY_NAME
    from devicelab._report import against_l_axes

    records = load_run(_spread_run(tmp_path)).measured
    fig = against_l_axes(records, [FIELD_BY_NAME["otps"], FIELD_BY_NAME["peak_mem_mb"]])
    otps_ax, mem_ax = fig.axes
    (bars,) = [c for c in otps_ax.containers if isinstance(c, ErrorbarContainer)]
    _, _, (segments,) = bars.lines
    spans = [(seg[0][0], seg[0][1], seg[1][1]) for seg in segments.get_segments()]
    assert spans == [(100, 11.5, 15.5), (200, 61.0, 62.5)]
    assert not [c for c in mem_ax.containers if isinstance(c, ErrorbarContainer)]


def test_the_table_shows_quartiles_cv_and_unstable_rows(tmp_path: Path) -> None:
    run = _spread_run(tmp_path)
    html = build_report(run).html_path.read_text(encoding="utf-8")
    assert "<td>13.0 [11.5–15.5] ±30.9%</td>" in html
    assert "<td>62.0 [61.0–62.5] ±2.5%</td>" in html
    assert "<td>CV &gt; 10%: OTPS</td>" in html and html.count('<tr class="flag">') == 1
    assert "1 of 2 cells are unstable" in html
    # The run's own max_cv decides (its scenario.toml); none there: the default, 10 %.
    (run / "scenario.toml").write_text('[scenario]\nname = "s"\nmax_cv = 40.0\n')
    html = build_report(run).html_path.read_text(encoding="utf-8")
    assert '<tr class="flag">' not in html and "All 2 cells are stable" in html
