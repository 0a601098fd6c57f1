"""``python -m devicelab_android.hostcli``: a build that cannot be done is bad input (exit 2,
one line naming what to fix), as every devicelab error is mapped by devicelab.exit_code."""

from __future__ import annotations

import pytest
from devicelab_android import hostcli

import devicelab


def test_a_failed_build_is_bad_input_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def cannot_build(*args: object) -> None:
        raise hostcli.HostCliError(f"cmake is not installed: {hostcli.CMAKE_FIX}.")

    monkeypatch.setattr(hostcli, "host_tool", cannot_build)
    assert hostcli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: cmake is not installed: {hostcli.CMAKE_FIX}.\n"
    assert isinstance(hostcli.HostCliError("x"), devicelab.UsageError)
