"""The exception tree's exit codes: bad input is 2 (one paragraph, no traceback), a run-time
failure 1, in ``devicelab`` and in any command line a plugin ships."""

from __future__ import annotations

import pytest

import devicelab
from devicelab import exit_code
from devicelab.testing import run_cli

BAD_INPUT = "UsageError ScenarioError PluginError MissingDependencyError CorpusError ModelError"


@pytest.mark.parametrize("name", [*BAD_INPUT.split(), "RunDirError"])
def test_bad_input_exits_2(name: str) -> None:
    assert exit_code(getattr(devicelab, name)("fix it")) == 2


@pytest.mark.parametrize("name", ["DevicelabError", "TrialError", "EngineError"])
def test_a_failure_that_is_not_bad_input_exits_1(name: str) -> None:
    assert exit_code(getattr(devicelab, name)("it broke")) == 1


def test_the_cli_maps_an_error_raised_in_a_command_by_the_same_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A missing scenario file is a ScenarioError: one paragraph on stderr and exit 2.
    assert run_cli(["run", "no/such/scenario.toml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devicelab: error: scenario file no/such/scenario.toml does not exist")
    assert "Traceback" not in err
