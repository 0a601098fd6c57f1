"""devicelab.testing and the devicelab_plugin fixture: the helpers plugin authors use."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import devicelab_docassist
import pytest
from wordsplugin import WordsPlugin, make_corpus

import devicelab
from devicelab import _plugins as plugin_manager
from devicelab._cli import main
from devicelab._errors import PluginError
from devicelab._scenario import load_scenario
from devicelab.pytest_plugin import InstallPlugin
from devicelab.testing import (
    installed_plugin,
    make_scenario,
    plugin_name,
    registry_with,
    run_scenario,
)


class Misspelled:
    @devicelab.hookimpl
    def devicelab_register_task(self, register: object) -> None: ...


def test_plugin_names() -> None:
    assert plugin_name(devicelab_docassist) == "docassist"
    assert plugin_name(WordsPlugin()) == "wordsplugin"


def test_registry_with_adds_plugins_to_the_selected_builtins() -> None:
    reg = registry_with(WordsPlugin())
    assert "wordsplugin" in reg.plugins and "host" in reg.plugins
    assert reg.tasks["COUNT"][0] == "wordsplugin" and ("words", "host") in reg.engines
    # A plugin already loaded through its entry point is not registered twice.
    assert registry_with(devicelab_docassist).plugins.count("docassist") == 1


def test_registry_with_reports_plugin_errors() -> None:
    with pytest.raises(PluginError, match=r"devicelab_register_task\b.*devicelab_register_tasks"):
        registry_with(Misspelled())


def test_make_scenario_writes_a_valid_tiny_scenario(tmp_path: Path) -> None:
    path = make_scenario(tmp_path, kinds=["SUMM", "QA"], extra="[telemetry]\ninterval_s = 0.05")
    sc = load_scenario(path)
    assert sc.task_kinds == ("SUMM", "QA") and sc.lengths == (100,) and sc.sections == 1
    assert sc.max_output_tokens == 8 and sc.repetitions == 1 and sc.warmup == 0
    assert sc.models[0].name == "smollm2-135m-instruct" and sc.documents == "docassist-mini"
    assert sc.device == "host" and sc.telemetry_interval_s == 0.05


def test_make_scenario_merges_tables_and_names_the_engine(tmp_path: Path) -> None:
    path = make_scenario(
        tmp_path, kinds=["QA"], model_keys={"engine": "llama.cpp", "quant": "Q4_1"}, device="virtual-s24",
        tables={"device": {"options": {"heat_time_scale": 100}}, "noise": {"on_noisy": "flag"}},
    )  # fmt: skip
    sc = load_scenario(path)
    assert sc.models[0].engine == "llama.cpp" and sc.models[0].quant == "q4_1"
    # A table already written keeps its keys; the ones given are added to it.
    assert sc.device == "virtual-s24" and sc.device_options == {"heat_time_scale": 100}
    assert sc.on_noisy == "flag"
    # Without repetitions the scenario's own default holds.
    assert load_scenario(make_scenario(tmp_path, kinds=["QA"], repetitions=None)).repetitions == 3


def test_run_scenario_returns_the_trial_records(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus.jsonl")
    path = make_scenario(
        tmp_path, kinds=["COUNT"], model="words-a", documents=str(corpus), lengths=[10, 20],
        sections=2, model_options={"n_ctx": 512}, repetitions=2,
    )  # fmt: skip
    records = run_scenario(path, registry_with(WordsPlugin()))
    assert len(records) == 2 * 1 * 2 and all(r["status"] == "ok" for r in records)
    assert records[0]["quality"]["words"] == 8.0
    assert len(list(tmp_path.glob("plugin-test-run-*/trials.jsonl"))) == 1


def test_installed_plugin_is_seen_by_the_cli_and_removed_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (os.environ["DEVICELAB_PLUGINS"], list(sys.path))
    with installed_plugin(WordsPlugin(), "words") as reg:
        assert reg.tasks["COUNT"][0] == "words"
        main(["plugins", "--json"])
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["words"]["registered"]["tasks"] == ["COUNT"]
    assert (os.environ["DEVICELAB_PLUGINS"], sys.path) == before
    assert "words" not in plugin_manager.get_registry().plugins


def test_devicelab_plugin_fixture(devicelab_plugin: InstallPlugin) -> None:
    reg = devicelab_plugin(WordsPlugin(), "words")
    assert "words" in reg.plugins and plugin_manager.get_registry() is reg


def test_devicelab_plugin_fixture_undid_the_previous_test() -> None:
    assert "words" not in plugin_manager.get_registry().plugins
    assert not [m for m in sys.modules if m.startswith("_devicelab_installed_")]


def test_devicelab_plugin_fixture_reports_plugin_errors(devicelab_plugin: InstallPlugin) -> None:
    with pytest.raises(PluginError, match=r"plugin 'typo'"):
        devicelab_plugin(Misspelled(), "typo")
    assert "typo" not in plugin_manager.get_registry().plugins
