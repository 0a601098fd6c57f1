"""A field added to FIELDS, and to the records, shows up in every view with no other edit:
the summary, the CLI's table, the HTML report's table and figures, compare, a gate check
and export; a median field with its spread (p25, p75, CV) in each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab import _gates as gates
from devicelab import _record, load_run
from devicelab._cli import print_summary
from devicelab._compare import compare_runs
from devicelab._export import trial_rows
from devicelab._metrics import summarize
from devicelab._record import Field
from devicelab._report import build_report

GATES = Path(__file__).parent / "data" / "gates"
# A field no view knows: the share of the trial the GPU was busy, lower is better.
GPU = Field("gpu_busy_pct", "%", False, "GPU busy", "median", 1)


@pytest.fixture
def gpu_field(monkeypatch: pytest.MonkeyPatch) -> Field:
    monkeypatch.setattr(_record, "FIELDS", (*_record.FIELDS, GPU))
    monkeypatch.setitem(_record.FIELD_BY_NAME, GPU.name, GPU)
    return GPU


def _with_gpu(tmp_path: Path, name: str, base: float) -> Path:
    """The baseline run with ``gpu_busy_pct`` = base + 0.1 * i on its i-th trial."""
    lines = (GATES / "baseline" / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    out = tmp_path / name
    out.mkdir()
    recs = [{**json.loads(line), GPU.name: base + 0.1 * i} for i, line in enumerate(lines)]
    (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


def test_a_new_field_appears_in_every_view(
    gpu_field: Field, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _with_gpu(tmp_path, "base", 10.0)
    busier = _with_gpu(tmp_path, "busier", 20.0)
    run = load_run(base)

    rows = summarize(run.measured)
    summ = next(r for r in rows if r["task"] == "SUMM")
    want = sorted(
        r.value(GPU.name) for r in run.measured if r.identity.task == "SUMM"
    )  # six values: the median is the mean of the middle two
    assert summ[GPU.name] == pytest.approx((want[2] + want[3]) / 2)

    spread = summ["spread"][GPU.name]
    assert spread["p25"] < summ[GPU.name] < spread["p75"] and spread["cv_pct"] > 0

    print_summary(rows)
    shown = capsys.readouterr().out
    assert "GPU busy %" in shown
    assert f"{summ[GPU.name]:.1f} " in shown and f" ±{spread['cv_pct']:.1f}%" in shown

    html = build_report(base).html_path.read_text(encoding="utf-8")
    cell = (
        f"{summ[GPU.name]:.1f} [{spread['p25']:.1f}–{spread['p75']:.1f}] ±{spread['cv_pct']:.1f}%"
    )
    assert "<th>GPU busy %</th>" in html and f"<td>{cell}</td>" in html
    assert (base / "report" / f"{GPU.name}.png").is_file()  # its own figure against L
    assert f'data-figure="{GPU.name}.png">{{"{GPU.name}":' in html  # with its error bars

    compared = [r for r in compare_runs(run, load_run(busier)) if r.metric == GPU.name]
    assert len(compared) == 2 and all(r.verdict == "worse" for r in compared)
    assert all(r.cv_pct_a and r.p25_b and r.p75_b for r in compared)
    assert run_cli(["compare", str(base), str(busier)]) == 0
    assert GPU.name in capsys.readouterr().out

    check = gates.parse_check(f"{GPU.name}:median:5%")
    comp = gates.compare(run, load_run(busier), [check], gates.DEFAULT_ALPHA)
    assert {r.status for r in comp.results} == {gates.FAIL}
    assert run_cli(["gate", str(base), str(base), "--fail", f"{GPU.name}:median:5%"]) == 0

    exported = trial_rows(base)
    assert [r[GPU.name] for r in exported] == pytest.approx([10.0 + 0.1 * i for i in range(13)])


def test_without_the_field_no_view_knows_it(tmp_path: Path) -> None:
    base = _with_gpu(tmp_path, "base", 10.0)
    assert GPU.name not in summarize(load_run(base).measured)[0]
    with pytest.raises(gates.GateSpecError, match="unknown metric"):
        gates.parse_check(f"{GPU.name}:median:5%")
