"""The plugin as devicelab sees it: registered, listed, used by a scenario on the host."""

from __future__ import annotations

import json
from pathlib import Path

import devicelab_example
import pytest

import devicelab
from devicelab.pytest_plugin import InstallPlugin
from devicelab.testing import make_scenario, plan_scenario, registry_with, run_cli, run_scenario


def test_registry_with_adds_the_task_and_the_collector() -> None:
    registry = registry_with(devicelab_example)
    assert registry.tasks["KW"][0] == "example"
    assert registry.collectors["loadavg"][0] == "example"


def test_listed_by_devicelab_plugins(
    devicelab_plugin: InstallPlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    devicelab_plugin(devicelab_example, "example")
    assert run_cli(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["example"]["registered"] == {"tasks": ["KW"], "collectors": ["loadavg"]}


def test_installed_entry_point_loads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install` put the entry point in place: devicelab loads it like any plugin."""
    monkeypatch.setenv("DEVICELAB_PLUGINS", "host,llamacpp,docassist,example")
    registry = devicelab.load_plugins()
    assert "example" in registry.plugins and "KW" in registry.tasks


def test_scenario_with_kw_is_accepted(tmp_path: Path) -> None:
    path = make_scenario(tmp_path, kinds=["KW", "SUMM"])
    plan = plan_scenario(path, registry_with(devicelab_example))
    assert [t.task for t in plan.trials()] == ["KW", "SUMM"]
    assert "loadavg" in plan.collector_factories


@pytest.mark.e2e
def test_kw_runs_on_the_host_with_the_real_model(tmp_path: Path) -> None:
    path = make_scenario(tmp_path, kinds=["KW"], max_output_tokens=8)
    out = tmp_path / "run"
    [record] = run_scenario(path, registry_with(devicelab_example), out)
    assert record["status"] == "ok", record["error"]
    assert record["task"] == "KW" and record["output_tokens"] >= 1
    quality = record["quality"]
    assert set(quality) == {"keywords_parsed", "keywords_in_document"}
    assert 0 <= quality["keywords_in_document"] <= 1
    assert 0 <= quality["keywords_parsed"] <= 5
    samples = devicelab.load_run(out).telemetry
    assert samples and all("load_1m" in s for s in samples)
