from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from wordsplugin import BUILTINS, run_cli

from devicelab import _plugins as plugin_manager
from devicelab._rundir import TRIALS, read_jsonl


@pytest.mark.usefixtures("words_installed")
def test_run_ok_prints_summary_and_exits_0(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "ITPS" in captured.out and "SUMM" in captured.out
    assert len(list(read_jsonl(out / TRIALS))) == 17
    summary = json.loads((out / "summary.json").read_text())
    assert {r["n"] for r in summary} == {4}  # 2 documents x 2 repetitions per task and L
    # The words engine reports no prefill count: the run says its prefills are unproven.
    assert "16 of 16 measured trials could not prove a cold prefill" in captured.err


@pytest.mark.usefixtures("words_installed")
@pytest.mark.parametrize(
    ("max_cv", "last_line"),
    [
        # Any variation at all is above 0 %: every cell of real timings is unstable.
        ("0", "devicelab: 4 of 4 cells are unstable (CV above max_cv 0% or noisy trials"),
        ("1e9", "devicelab: all 4 cells are stable (CV at most 1e+09%, no noisy trials)."),
    ],
)
def test_run_ends_with_how_many_cells_are_unstable(
    words_scenario: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    max_cv: str,
    last_line: str,
) -> None:
    path = words_scenario()
    path.write_text(path.read_text().replace('name = "t"', f'name = "t"\nmax_cv = {max_cv}'))
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith(last_line)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 4
    for row in summary:
        assert row["unstable"] is (max_cv == "0")
        assert bool(row["unstable_reasons"]) is row["unstable"]
        otps = row["spread"]["otps"]
        assert otps["p25"] <= row["otps"] <= otps["p75"] and otps["cv_pct"] >= 0
        assert "peak_mem_mb" not in row["spread"]  # a maximum has no spread
    if max_cv == "0":
        assert "unstable" in captured.out and "CV > 0%: " in captured.out  # the table says why
        assert 'repetitions = "auto"' in captured.err


@pytest.mark.usefixtures("words_installed")
def test_some_trials_failed_exits_1_and_keeps_results(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario(model="fail-trial")), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "8 of 17 trials failed" in err
    assert " cells are " in err.splitlines()[-1]  # the stability line is still the last word
    assert len(list(read_jsonl(out / TRIALS))) == 17


@pytest.mark.usefixtures("words_installed")
def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = words_scenario()
    path.write_text(path.read_text().replace("lengths = [10, 20]", "lengths = [10, 15, 20]"))
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "[context] lengths" in err and "must be among 10, 20" in err
    assert not (tmp_path / "run").exists()  # nothing created for bad input


@pytest.mark.usefixtures("words_installed")
def test_existing_run_needs_resume_then_resume_skips_done(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    path = str(words_scenario())
    assert run_cli(["run", path, "--out", str(out)]) == 0
    assert run_cli(["run", path, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli(["run", path, "--out", str(out), "--resume"]) == 0
    assert "17 trials were already recorded" in capsys.readouterr().err
    assert len(list(read_jsonl(out / TRIALS))) == 17


def test_missing_scenario_and_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["run", "no/such.toml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli(["run", "x.toml", "--devise", "host"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_plugins_and_devices_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["plugins", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert names == set(BUILTINS.split(","))
    # Phones are listed in the Android plugin's tests, against the virtual S24.
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "android")
    plugin_manager.reset()
    assert run_cli(["devices", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert devices[0]["name"] == "host" and devices[0]["details"]["ram_mb"] > 0


def test_summary_shows_the_device_when_a_run_spans_several(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from devicelab._cli import print_summary
    from devicelab._metrics import summarize
    from devicelab._record import TrialRecord

    base = {"status": "ok", "warmup": False, "model": "m", "quant": "q", "task": "SUMM"}
    records = [
        TrialRecord.from_json(
            {**base, "device": dev, "context_tokens": 10, "itps": 1.0, "quality": {"bleu": 0.5}}
        )
        for dev in ("phone-a", "phone-b")
    ]
    print_summary(summarize(records))
    out = capsys.readouterr().out
    assert "device" in out and "phone-a" in out and "phone-b" in out
    print_summary(summarize(records[:1]))
    assert "device" not in capsys.readouterr().out
