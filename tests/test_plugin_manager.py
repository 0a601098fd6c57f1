from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from devicelab import plugin_manager
from devicelab.errors import PluginError


def install_plugin(site: Path, name: str, source: str, dist: str | None = None) -> None:
    """Make an installed distribution with a ``devicelab`` entry point, as pip would."""
    module = f"devicelab_{name}_test"
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist or module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist or module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[devicelab]\n{name} = {module}\n")


TASK_PLUGIN = """
import devicelab
from devicelab import Task, TaskPrompt, Message

class Keywords(Task):
    kind = "{kind}"
    def prompts(self, document, context):
        return [TaskPrompt("kw", (Message("user", context),))]

@devicelab.hookimpl
def devicelab_register_tasks(register):
    register(Keywords())
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for mod in [m for m in sys.modules if m.startswith("devicelab_") and m.endswith("_test")]:
        del sys.modules[mod]


def test_builtins_load_through_entry_points() -> None:
    reg = plugin_manager.get_registry()
    assert set(reg.plugins) == {"host", "llamacpp", "docassist", "android", "virtual"}
    assert set(reg.tasks) == {"SUMM", "QS", "QA"}
    assert "host" in reg.devices
    assert ("llama.cpp", "host") in reg.engines
    assert reg.models["smollm2-135m-instruct"][0] == "llamacpp"
    assert plugin_manager.get_registry() is reg  # loaded once


def test_third_party_plugin_through_the_same_door(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(site, "kw", TASK_PLUGIN.format(kind="KW"))
    monkeypatch.setenv("DEVICELAB_PLUGINS", "host,docassist,kw")
    reg = plugin_manager.get_registry()
    assert reg.tasks["KW"][0] == "kw"
    row = next(r for r in reg.summary() if r["name"] == "kw")
    assert row["registered"] == {"tasks": ["KW"]}


def test_allow_and_block_lists(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(site, "kw", TASK_PLUGIN.format(kind="KW"))
    monkeypatch.delenv("DEVICELAB_PLUGINS")
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "kw,llamacpp")
    reg = plugin_manager.get_registry()
    assert "kw" not in reg.plugins and "llamacpp" not in reg.plugins
    assert "docassist" in reg.plugins
    plugin_manager.reset()
    monkeypatch.setenv("DEVICELAB_PLUGINS", "")
    assert plugin_manager.get_registry().plugins == []


def test_duplicate_component_names_are_an_error(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(site, "dup", TASK_PLUGIN.format(kind="SUMM"))
    monkeypatch.setenv("DEVICELAB_PLUGINS", "docassist,dup")
    with pytest.raises(PluginError, match=r"task 'SUMM' is registered twice.*'docassist'.*'dup'"):
        plugin_manager.get_registry()


def test_misspelled_hook_is_caught_at_start(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = TASK_PLUGIN.format(kind="KW").replace(
        "devicelab_register_tasks", "devicelab_register_task"
    )
    install_plugin(site, "typo", source)
    monkeypatch.setenv("DEVICELAB_PLUGINS", "typo")
    with pytest.raises(
        PluginError, match=r"plugin 'typo'.*devicelab_register_task.*devicelab_register_tasks"
    ):
        plugin_manager.get_registry()


def test_wrong_hook_argument_is_caught(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (
        TASK_PLUGIN.format(kind="KW").replace("(register)", "(add)").replace("register(K", "add(K")
    )
    install_plugin(site, "badarg", source)
    monkeypatch.setenv("DEVICELAB_PLUGINS", "badarg")
    with pytest.raises(PluginError, match=r"plugin 'badarg'.*add"):
        plugin_manager.get_registry()


def test_broken_plugin_is_listed_and_the_rest_works(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(site, "broken", "import not_a_module_anywhere\n")
    monkeypatch.setenv("DEVICELAB_PLUGINS", "docassist,broken")
    reg = plugin_manager.get_registry()
    assert "SUMM" in reg.tasks
    assert [b.name for b in reg.broken] == ["broken"]
    from devicelab.cli import main

    main(["plugins", "--json"])
    rows = json.loads(capsys.readouterr().out)
    broken = next(r for r in rows if r["name"] == "broken")
    assert "No module named 'not_a_module_anywhere'" in broken["error"]


def test_plugin_that_fails_while_registering(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = TASK_PLUGIN.format(kind="KW").replace("register(Keywords())", "1 / 0")
    install_plugin(site, "boom", source)
    monkeypatch.setenv("DEVICELAB_PLUGINS", "boom")
    with pytest.raises(
        PluginError, match=r"'boom' failed in devicelab_register_tasks.*ZeroDivision"
    ):
        plugin_manager.get_registry()
