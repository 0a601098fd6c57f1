"""The summary table: each median with its spread, unstable rows marked with the reason."""

from __future__ import annotations

import pytest

from devicelab._metrics import summarize
from devicelab._record import FIELD_BY_NAME, TrialRecord
from devicelab._table import field_cell, summary_table, to_html


def _rec(**kw: object) -> TrialRecord:
    base: dict[str, object] = {
        "device": "host", "model": "m", "quant": "q", "task": "SUMM", "context_tokens": 200,
        "status": "ok", "warmup": False, "itps": 100.0, "otps": 10.0, "peak_mem_mb": 50.0,
    }  # fmt: skip
    return TrialRecord.from_json({**base, **kw})


def _rows() -> list[dict[str, object]]:
    noisy = [_rec(context_tokens=400, otps=10.0, noisy=n) for n in (False, True, False)]
    return summarize([*(_rec(otps=v) for v in (20.0, 10.0, 14.0, 12.0)), *noisy])


def test_a_median_cell_shows_its_cv_and_with_iqr_its_quartiles() -> None:
    row = _rows()[0]
    otps, mem = FIELD_BY_NAME["otps"], FIELD_BY_NAME["peak_mem_mb"]
    assert field_cell(otps, row) == "13.0 ±30.9%"
    assert field_cell(otps, row, iqr=True) == "13.0 [11.5–15.5] ±30.9%"
    assert field_cell(mem, row, iqr=True) == "50"  # a maximum, without a spread
    # A cell of one trial has quartiles but no CV; an unmeasured field stays "-".
    one = summarize([_rec(otps=10.0)])[0]
    assert field_cell(otps, one, iqr=True) == "10.0 [10.0–10.0]"
    assert field_cell(FIELD_BY_NAME["energy_j"], one) == "-"
    # A row from an old summary.json (no spread) still shows its median.
    assert field_cell(otps, {"otps": 12.0}) == "12.0"


def test_unstable_rows_are_marked_with_the_reason() -> None:
    table = summary_table(_rows())
    titles = [c.title for c in table.columns]
    assert titles[-1] == "unstable"
    assert table.marked == (True, True)
    assert table.rows[0][-1] == "CV > 10%: OTPS"
    assert table.rows[1][-1] == "1 noisy trial"
    html = to_html(table)
    assert html.count('<tr class="flag">') == 2 and "<td>1 noisy trial</td>" in html
    calm = summary_table(summarize([_rec(), _rec()]))
    assert "unstable" not in [c.title for c in calm.columns] and calm.marked == (False,)


def test_the_terminal_shows_quartiles_when_they_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from devicelab import _cli

    rows = _rows()
    monkeypatch.setattr(_cli, "out", Console(width=200, markup=False, highlight=False))
    _cli.print_summary(rows)
    wide = capsys.readouterr().out
    assert "13.0 [11.5–15.5] ±30.9%" in wide and "Medians [p25–p75] ±CV" in wide
    monkeypatch.setattr(_cli, "out", Console(width=120, markup=False, highlight=False))
    _cli.print_summary(rows)
    narrow = capsys.readouterr().out
    assert "13.0 ±30.9%" in narrow and "[11.5" not in narrow


def test_a_narrow_terminal_wraps_cells_but_never_cuts_a_model_name() -> None:
    from rich.console import Console

    from devicelab._table import Column, Table, to_rich

    name = "smollm2-135m-instruct"
    table = Table(
        "t",
        (Column("model", "left"), *(Column(f"field {i}") for i in range(8)), Column("why", "left")),
        ((name, *("123.4 ±12.3%" for _ in range(8)), "CV > 10%: ITPS, OTPS, TTFT"),),
    )
    console = Console(width=100, record=True, markup=False, highlight=False)
    console.print(to_rich(table))
    text = console.export_text()
    assert name in text and "…" not in text
