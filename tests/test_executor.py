"""Executors: the local default, one registered by a plugin, and the choice between them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from wordsplugin import run_cli

import devicelab
from devicelab import DeviceSession, Executor, Plan, Reporter, RunDir, RunOutcome
from devicelab import _plugins as plugin_manager
from devicelab._rundir import TRIALS, read_jsonl
from devicelab._runtime.local import LocalExecutor


class ReverseExecutor(Executor):
    """Runs the trials last first, through a DeviceSession, as a remote executor would."""

    name = "reverse"

    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        done = run.done_trial_ids()
        todo = [t for t in plan.trials() if t.trial_id not in done][::-1]
        outcome = RunOutcome(skipped=len(done))
        session = DeviceSession(plan, run.run_id, device_label="backwards")
        try:
            session.open()
            for trial in todo:
                result = session.run_trial(trial)
                run.append_samples(result.samples)
                run.append_trial(result.record)
                outcome.add(result.record)
        finally:
            session.close()
        return outcome


class ReversePlugin:
    @devicelab.hookimpl
    def devicelab_register_executors(self, register: Callable[[type[Executor]], None]) -> None:
        register(ReverseExecutor)


class ClashPlugin:
    @devicelab.hookimpl
    def devicelab_register_executors(self, register: Callable[[type[Executor]], None]) -> None:
        register(LocalExecutor)


REVERSE_PLUGIN = ReversePlugin()


@pytest.fixture
def reverse_installed(
    words_installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    info = site / "devicelab_reverse-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: devicelab-reverse\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[devicelab]\nreverse = test_executor:REVERSE_PLUGIN\n")
    monkeypatch.setenv("DEVICELAB_PLUGINS", os.environ["DEVICELAB_PLUGINS"] + ",reverse")


@pytest.mark.usefixtures("reverse_installed")
def test_scenario_key_picks_a_plugin_executor_and_resume_skips_recorded(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    path = words_scenario()
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\nexecutor = "reverse"'))
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    local = tmp_path / "local"
    assert run_cli(["run", str(path), "--out", str(local), "--executor", "local"]) == 0
    in_order = [r["trial_id"] for r in read_jsonl(local / TRIALS)]
    assert [r["trial_id"] for r in records] == in_order[::-1]
    assert {r["device"] for r in records} == {"backwards"}
    assert {r["device"] for r in read_jsonl(local / TRIALS)} == {"host"}
    # The executor is not part of what a run measures: the local run resumes the same directory.
    assert run_cli(["run", str(path), "--out", str(out), "--resume", "--executor", "local"]) == 0
    assert len(list(read_jsonl(out / TRIALS))) == len(records)


@pytest.mark.usefixtures("words_installed")
def test_unknown_executor_is_bad_input_naming_the_registered_ones(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out), "--executor", "nope"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown executor 'nope'" in err and "local" in err
    assert not out.exists()

    path = words_scenario()
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\nexecutor = "nope"'))
    assert run_cli(["run", str(path), "--out", str(out)]) == 2
    assert "[scenario] executor: unknown executor 'nope'" in " ".join(
        capsys.readouterr().err.split()
    )


@pytest.mark.usefixtures("words_installed")
def test_local_executor_takes_no_address(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", str(words_scenario()), "--out", str(tmp_path / "r"), "--address", "h:1"]
    assert run_cli(args) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_an_executor_name_is_registered_once() -> None:
    pm, broken = plugin_manager.new_plugin_manager()
    plugin_manager.register_plugin(pm, ClashPlugin(), "clash")
    with pytest.raises(devicelab.PluginError, match="executor 'local' is registered twice"):
        plugin_manager.build_registry(pm, broken)
