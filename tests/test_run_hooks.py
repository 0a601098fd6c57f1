"""The hooks for results: a run as it goes (started, each trial, finished), figures for the
report, a gate's baseline from a database. Plugins here implement them directly; the store
plugin's own use is tested in tests/plugins/test_store.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import run_cli

import devicelab

GATES = Path(__file__).resolve().parent / "data" / "gates"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @devicelab.hookimpl
    def devicelab_run_started(
        self, run: devicelab.RunDir, scenario: Any, db: str | None
    ) -> bool | None:
        self.calls.append(("started", (run.run_id, scenario.name, db)))
        return True if db is not None else None

    @devicelab.hookimpl
    def devicelab_trial_finished(
        self, run: devicelab.RunDir, record: devicelab.TrialRecord, samples: Sequence[Any]
    ) -> None:
        # The record is on disk before any plugin hears of it.
        on_disk = (run.path / "trials.jsonl").read_text().splitlines()
        assert json.loads(on_disk[-1])["trial_id"] == record.trial_id
        # Its samples too: they are the last lines of telemetry.jsonl.
        tele = (run.path / "telemetry.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in tele[len(tele) - len(samples) :]] == list(samples)
        self.calls.append(("trial", record.trial_id))

    @devicelab.hookimpl
    def devicelab_run_finished(
        self, run: devicelab.RunDir, outcome: devicelab.RunOutcome | None
    ) -> None:
        self.calls.append(("finished", None if outcome is None else len(outcome.records)))


class Broken:
    @devicelab.hookimpl
    def devicelab_run_started(self) -> None:
        raise RuntimeError("no database today")

    @devicelab.hookimpl(tryfirst=True)
    def devicelab_trial_finished(self) -> None:
        raise RuntimeError("disk full")

    @devicelab.hookimpl
    def devicelab_run_finished(self) -> None:
        raise RuntimeError("still full")


def _trials(out: Path) -> list[str]:
    lines = (out / "trials.jsonl").read_text().splitlines()
    return [json.loads(line)["trial_id"] for line in lines]


@pytest.mark.usefixtures("words_installed")
def test_run_hooks_hear_every_trial_and_a_failing_plugin_fails_nothing(
    tmp_path: Path,
    words_scenario: Callable[..., Path],
    devicelab_plugin: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = Recorder()
    devicelab_plugin(recorder, "recorder")
    devicelab_plugin(Broken(), "broken")
    out, db = tmp_path / "run", str(tmp_path / "x.db")
    assert run_cli(["run", str(words_scenario()), "--out", str(out), "--db", db]) == 0
    written = _trials(out)
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert recorder.calls[0] == ("started", (run_id, "t", db))
    # The broken plugin runs first for each trial and raises: the recorder still hears it.
    assert recorder.calls[1:-1] == [("trial", t) for t in written]
    assert recorder.calls[-1] == ("finished", len(written))
    err = capsys.readouterr().err
    for hook, why in [
        ("devicelab_run_started", "no database today"),
        ("devicelab_trial_finished", "disk full"),
        ("devicelab_run_finished", "still full"),
    ]:
        assert err.count(f"plugin 'broken' failed in {hook} (RuntimeError: {why})") == 1
    assert "no plugin stores results" not in err  # the recorder said it takes the database


@pytest.mark.usefixtures("words_installed")
def test_db_with_no_plugin_to_store_is_a_warning(
    tmp_path: Path,
    words_scenario: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "store")
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario(reps=1)), "--out", str(out), "--db"]) == 0
    assert "asked for (the default) but no plugin stores results" in capsys.readouterr().err
    assert _trials(out)


def test_report_figures_from_a_plugin(
    tmp_path: Path, devicelab_plugin: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[tuple[str, bool, str | None]] = []

    class Figures:
        @devicelab.hookimpl
        def devicelab_report_figures(
            self, run: devicelab.RunData, history: bool, db: str | None
        ) -> list[devicelab.ReportFigure]:
            got.append((run.meta["run_id"], history, db))
            return [devicelab.ReportFigure("extra.png", "An extra figure", b"\x89PNG", "why")]

    devicelab_plugin(Figures(), "figures")
    out, db = tmp_path / "report", str(tmp_path / "lab.db")
    args = ["report", str(GATES / "baseline"), "--out", str(out)]
    assert run_cli([*args, "--history", "--db", db]) == 0
    assert got == [("gates-baseline", True, db)]
    html = (out / "report.html").read_text()
    assert "<h2>An extra figure</h2>" in html and 'alt="extra.png"' in html
    assert (out / "extra.png").read_bytes() == b"\x89PNG"
    capsys.readouterr()
    assert run_cli([*args, "--db", db]) == 2
    assert "--db is where --history reads" in capsys.readouterr().err


def test_history_with_no_plugin_to_give_it_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "store")
    out = tmp_path / "report"
    assert run_cli(["report", str(GATES / "baseline"), "--out", str(out), "--history"]) == 0
    assert "--history added no figure" in capsys.readouterr().err
    assert (out / "report.html").exists()


def test_gate_baseline_from_a_plugin(
    devicelab_plugin: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "store")
    args = ["gate", "--baseline-from-db", str(GATES / "slower10"), "--fail", "otps:median:5%"]
    assert run_cli(args) == 2
    assert "needs a plugin that keeps a results database" in capsys.readouterr().err
    asked: list[tuple[str, str | None, int]] = []

    class Baseline:
        @devicelab.hookimpl
        def devicelab_baseline_from_db(
            self, candidate: devicelab.RunData, db: str | None, last: int
        ) -> devicelab.RunData:
            asked.append((candidate.meta["run_id"], db, last))
            return devicelab.load_run(GATES / "baseline")

    devicelab_plugin(Baseline(), "baseline")
    assert run_cli([*args, "--db", "team.db", "--last", "3"]) == 1
    assert asked == [("gates-slower10", "team.db", 3)]
    assert "FAIL" in capsys.readouterr().out
    assert run_cli([*args, "--last", "0"]) == 2
    assert "--last must be at least 1" in capsys.readouterr().err
