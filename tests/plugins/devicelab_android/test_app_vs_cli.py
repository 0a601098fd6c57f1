"""App versus CLI parity on a virtual S24: the shipped scenarios/app_vs_cli.toml, cut short
(one task, one L, two repetitions, the app's answers capped at 8 tokens), run through the CLI;
the run's summary, its report and `compare --by engine` show the gap per task and L."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import adbutils
import pytest
from wordsplugin import run_cli

from devicelab._rundir import TRIALS, read_jsonl

ROOT = Path(__file__).resolve().parents[3]


def short(text: str) -> str:
    """The shipped scenario with fewer trials; its [[models]] tables as they ship."""
    for key, value in (
        ("repetitions", "2"),
        ("warmup", "0"),
        ("kinds", '["QA"]'),
        ("sections", "1"),
        ("lengths", "[100]"),
        ("max_output_tokens", "8"),
    ):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    binary = ROOT / "devices" / "virtual-s24" / "llama-cli"
    return text.replace('"devices/virtual-s24/llama-cli"', f'"{binary}"')


@pytest.fixture
def short_answers(capped_mlcchat: Callable[[int], None]) -> None:
    capped_mlcchat(8)


@pytest.mark.usefixtures("short_answers")
def test_app_and_cli_on_one_phone_show_the_gap_per_task_and_l(
    tmp_path: Path, adb_server: adbutils.AdbClient, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "app_vs_cli.toml"
    scenario.write_text(short((ROOT / "scenarios" / "app_vs_cli.toml").read_text()))
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = list(read_jsonl(out / TRIALS))
    # One model loaded at a time: the CLI's trials, then the app's.
    assert [r["engine"] for r in records] == ["llama.cpp", "llama.cpp", "app", "app"]
    assert len({r["trial_id"] for r in records}) == 4
    assert {r["trial_id"].split("/")[3] for r in records} == {"llama.cpp", "app"}
    # TTFT, not OTPS, is checked: the app's speeds come from watching its screen, and an
    # 8-token answer can appear between two looks on a loaded machine (OTPS null, as it should).
    assert all(r["status"] == "ok" and r["ttft_s"] for r in records)
    # The app is watched through its screen: its records say so, and the inter-token
    # latencies a poll cannot resolve are null, not the polling interval.
    for r in records[2:]:
        assert r["tokens_batched"] is True
        assert [r[f"itl_{k}_ms"] for k in ("p50", "p90", "p99", "max")] == [None] * 4
    # The summary has a row per engine, then the gap table.
    assert "Engine gap" in printed and "llama.cpp" in printed and "app" in printed

    assert run_cli(["compare", str(out), "--by", "engine", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["a"], r["b"], r["task"], r["context_tokens"]) for r in rows} == {
        ("llama.cpp", "app", "QA", 100)
    }
    ttft = next(r for r in rows if r["metric"] == "ttft_s")
    assert ttft["n_a"] == ttft["n_b"] == 2 and ttft["note"] == "n<5"
    mine = [r["ttft_s"] for r in records]
    assert ttft["median_a"] == pytest.approx((mine[0] + mine[1]) / 2)
    assert ttft["median_b"] == pytest.approx((mine[2] + mine[3]) / 2)

    assert run_cli(["report", str(out)]) == 0
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Engine gap</h2>" in html and "<td>app</td>" in html
