"""The run pipeline (devicelab._runtime.pipeline): the one path `devicelab run` and
devicelab.testing.run_scenario take, from a scenario file to summary.json."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wordsplugin import WordEngine, WordsPlugin

import devicelab
from devicelab import Plan, RunDir, RunOutcome, ScenarioError, UsageError
from devicelab._executor import Executor, Reporter
from devicelab._record import TrialRecord
from devicelab._registry import Registry
from devicelab._rundir import RUN_META, SUMMARY
from devicelab._runtime.pipeline import RunInterrupted, run_pipeline
from devicelab._scenario import load_scenario
from devicelab.testing import registry_with, run_scenario


class Heard:
    """Run hooks that note what they hear, and an executor that stops after one trial."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @devicelab.hookimpl
    def devicelab_run_started(self, run: RunDir) -> None:
        self.calls.append("started")

    @devicelab.hookimpl
    def devicelab_trial_finished(self, record: TrialRecord) -> None:
        self.calls.append("trial")

    @devicelab.hookimpl
    def devicelab_run_finished(self, outcome: RunOutcome | None) -> None:
        self.calls.append(f"finished {None if outcome is None else len(outcome.records)}")

    @devicelab.hookimpl
    def devicelab_register_executors(self, register: Callable[[type[Executor]], None]) -> None:
        register(CtrlC)


class CtrlC(Executor):
    """Runs the first trial of the plan, then the user presses Ctrl-C."""

    name = "ctrl-c"

    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        from devicelab._runtime.execute import execute

        class Once(Reporter):
            def trial_done(self, record: TrialRecord) -> None:
                raise KeyboardInterrupt

        execute(plan, run, Once())  # its KeyboardInterrupt goes through
        return RunOutcome()


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def registry(heard: Heard) -> Registry:
    return registry_with(WordsPlugin(), heard)


class Said(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.lines.append(text)


def test_a_run_is_summarised_with_its_provenance_and_heard_by_the_registrys_plugins(
    words_scenario: Callable[..., Path], registry: Registry, heard: Heard, tmp_path: Path
) -> None:
    said = Said()
    result = run_pipeline(words_scenario(), registry, out=tmp_path / "run", reporter=said)
    assert result.outcome.failed == 0 and len(result.data.records) == 17
    assert result.rows == json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert {r["n"] for r in result.rows} == {4}
    meta = json.loads((tmp_path / "run" / RUN_META).read_text())
    assert meta["provenance"]["scenario"]["path"] == str(words_scenario())
    assert set(meta["provenance"]) == {"devicelab", "plugins", "host", "scenario", "loads"}
    assert meta["provenance"]["loads"]  # the session's load, added before its first record
    assert said.lines[0] == f"run {result.run_id} -> {tmp_path / 'run'}"
    # The hooks of the plugins in the registry, not only of the installed ones.
    assert heard.calls == ["started", *["trial"] * 17, "finished 17"]


def test_run_scenario_takes_the_same_path(
    words_scenario: Callable[..., Path], registry: Registry, heard: Heard, tmp_path: Path
) -> None:
    records = run_scenario(words_scenario(), registry, tmp_path / "run")
    assert len(records) == 17
    assert (tmp_path / "run" / SUMMARY).is_file()  # skipped by run_scenario before
    assert heard.calls[0] == "started" and heard.calls[-1] == "finished 17"


def test_the_scenarios_executor_is_looked_up_before_anything_is_written(
    words_scenario: Callable[..., Path], registry: Registry, tmp_path: Path
) -> None:
    path = words_scenario()
    path.write_text(path.read_text().replace('name = "t"\n', 'name = "t"\nexecutor = "rey"\n', 1))
    with pytest.raises(ScenarioError, match=r"\[scenario\] executor: unknown executor 'rey'"):
        run_scenario(path, registry, tmp_path / "run")
    with pytest.raises(UsageError, match=r"--resume needs --out DIR"):
        run_pipeline(words_scenario(), registry, resume=True)
    assert not (tmp_path / "run").exists()


def test_ctrl_c_closes_the_run_keeps_its_trials_and_tells_the_hooks(
    words_scenario: Callable[..., Path], registry: Registry, heard: Heard, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stop:
        run_pipeline(words_scenario(), registry, out=out, executor="ctrl-c")
    assert (stop.value.path, stop.value.kept) == (out, 1)
    assert heard.calls == ["started", "trial", "finished None"]
    assert not (out / SUMMARY).exists()
    # The trial is kept: a resumed run does only the rest.
    result = run_pipeline(words_scenario(), registry, out=out, resume=True)
    assert result.outcome.skipped == 1 and len(result.outcome.records) == 16


@pytest.fixture
def ctrl_c_handler() -> Iterator[None]:
    """Python's own Ctrl-C handler, as in a terminal: a shell's background job (as CI may
    run the tests) starts with SIGINT ignored, and Ctrl-C then reaches nothing to watch."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_handler")
def test_a_ctrl_c_the_engine_swallows_still_stops_the_run_and_keeps_the_finished_trials(
    words_scenario: Callable[..., Path],
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(WordEngine, "swallowed", False)
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stop:
        run_pipeline(words_scenario(model="swallow-ctrl-c"), registry, out=out)
    # The third trial's attempt heard the Ctrl-C: it is neither kept nor retried.
    assert stop.value.kept == 2
    assert len((out / "trials.jsonl").read_text().splitlines()) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    result = run_pipeline(words_scenario(model="swallow-ctrl-c"), registry, out=out, resume=True)
    assert result.outcome.skipped == 2 and len(result.data.records) == 17


def test_the_run_directory_records_the_provenance_it_is_given(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    sc = load_scenario(words_scenario())
    RunDir.open(tmp_path / "a", sc, resume=False, provenance={"host": {"os": "x"}}).close()
    assert json.loads((tmp_path / "a" / RUN_META).read_text())["provenance"] == {
        "host": {"os": "x"}
    }
    # Given none (a tool that opens a run directory itself), it records none and
    # collects nothing: compare then says the run has no provenance.
    RunDir.open(tmp_path / "b", sc, resume=False).close()
    assert "provenance" not in json.loads((tmp_path / "b" / RUN_META).read_text())
