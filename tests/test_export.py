from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab._export import flatten

DATA = Path(__file__).parent / "data" / "gates"


def test_flatten_nested_and_lists() -> None:
    row = flatten(
        {
            "a": 1,
            "device_info": {"os": "x"},
            "quality": {"f1": 0.5},
            "lost_attempts": ["e"],
            "output_text": "hi",
            "engine_timings": None,
        }
    )
    assert row == {"a": 1, "device_info.os": "x", "quality.f1": 0.5, "lost_attempts": '["e"]'}
    assert flatten({"output_text": "hi"}, with_text=True) == {"output_text": "hi"}


def test_csv_columns_and_rows(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert run_cli(["export", str(DATA / "baseline"), "--format", "csv", "--out", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 13  # 1 warm-up + 2 tasks x 6 repetitions
    cols = set(rows[0])
    assert {"trial_id", "device_info.cpu", "engine_timings.prefill_ms", "otps"} <= cols
    assert "output_text" not in cols and "device_info" not in cols and "engine_timings" not in cols
    assert rows[0]["lost_attempts"] == "[]"
    out2 = tmp_path / "t2.csv"
    args = ["export", str(DATA / "baseline"), "--format", "csv", "--out", str(out2)]
    assert run_cli([*args, "--with-text"]) == 0
    assert "output_text" in out2.read_text().splitlines()[0].split(",")


def test_parquet_round_trip(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "t.parquet"
    args = ["export", str(DATA / "slower10"), "--format", "parquet", "--out", str(out)]
    assert run_cli(args) == 0
    table = pq.read_table(out)
    assert table.num_rows == 13
    rows = table.to_pylist()
    src = [
        json.loads(line) for line in (DATA / "slower10" / "trials.jsonl").read_text().splitlines()
    ]
    assert [r["trial_id"] for r in rows] == [r["trial_id"] for r in src]
    assert [r["otps"] for r in rows] == [r["otps"] for r in src]
    assert rows[0]["device_info.cpu"] == src[0]["device_info"]["cpu"]


def test_missing_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "t.parquet"
    args = ["export", str(DATA / "baseline"), "--format", "parquet", "--out", str(out)]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert "pip install 'devicelab[report]'" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "not a directory"),
        (["--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run_cli(["export", str(tmp_path / "missing"), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


def test_out_is_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", str(DATA / "baseline"), "--format", "csv", "--out", str(tmp_path)]
    assert run_cli(args) == 2
    assert "is a directory" in capsys.readouterr().err
