from __future__ import annotations

import json
from pathlib import Path

import pytest
from wordsplugin import BUILTINS, install_plugin

from devicelab import _plugins as plugin_manager
from devicelab._errors import PluginError

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


def test_builtins_load_through_entry_points() -> None:
    reg = plugin_manager.get_registry()
    assert set(reg.plugins) == set(BUILTINS.split(","))
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


@pytest.mark.parametrize(
    ("name", "edits", "error"),
    [
        # A misspelled hook name.
        ("typo", [("devicelab_register_tasks", "devicelab_register_task")],
         r"plugin 'typo'.*Rename devicelab_register_task to devicelab_register_tasks\."),
        # The right hook with its argument named otherwise.
        ("badarg", [("(register)", "(add)"), ("register(K", "add(K")],
         r"plugin 'badarg'.*devicelab_register_tasks takes \(register\), not \(add\)"),
    ],
)  # fmt: skip
def test_a_hook_written_wrong_is_caught_at_start(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    edits: list[tuple[str, str]],
    error: str,
) -> None:
    source = TASK_PLUGIN.format(kind="KW")
    for old, new in edits:
        source = source.replace(old, new)
    install_plugin(site, name, source)
    monkeypatch.setenv("DEVICELAB_PLUGINS", name)
    with pytest.raises(PluginError, match=error):
        plugin_manager.get_registry()


@pytest.fixture
def broken(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin "broken" whose module cannot be imported, selected with host and docassist."""
    install_plugin(site, "broken", "import not_a_module_anywhere\n")
    monkeypatch.setenv("DEVICELAB_PLUGINS", "host,docassist,broken")


@pytest.mark.usefixtures("broken")
def test_broken_plugin_is_listed_and_the_rest_works(capsys: pytest.CaptureFixture[str]) -> None:
    reg = plugin_manager.get_registry()
    assert "SUMM" in reg.tasks
    assert [b.name for b in reg.broken] == ["broken"]
    from devicelab._cli import main

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


LAB_PLUGIN = '''
import devicelab
from devicelab import CorpusSpec, Device, DeviceInfo, DeviceType, Engine, GenerationResult
from devicelab import ModelSpec, Collector, Metric
from pathlib import Path


class BenchDevice(Device):
    kind = "bench"
    def info(self):
        return {{"kind": "bench"}}


class BenchType(DeviceType):
    kind = "bench"
    def discover(self):
        return [DeviceInfo("bench0", "bench", "a test bench")]
    def accepts(self, name):
        return name.startswith("bench")
    def open(self, name, profile):
        return BenchDevice(name, profile.get("options", {{}}))


class EchoEngine(Engine):
    name = "echo"
    device_kinds = ("bench",)
    def load(self): pass
    def context_window(self): return 10_000
    def tokenize(self, text): return [len(w) for w in text.split()]
    def detokenize(self, tokens): return " ".join("x" * t for t in tokens)
    def prompt_tokens(self, messages): return sum(len(m.content.split()) for m in messages)
    def generate(self, request, stream):
        stream.sent()
        words = request.messages[-1].content.split()[: request.max_tokens]
        for _ in words:
            stream.token()
        # Words of its own: the prompt's words in order would be an echo, which tasks strip.
        return GenerationResult(" ".join(f"w{{i}}" for i in range(len(words))), self.prompt_tokens(request.messages), len(words))


class Ticks(Collector):
    name = "ticks"
    def sample(self):
        return {{"ticks": 1}}


class Length(Metric):
    name = "length"
    needs_references = False
    def score(self, item):
        return {{"words": float(sum(len(c.split()) for c in item.candidates))}}


@devicelab.hookimpl
def devicelab_register_devices(register):
    register(BenchType())

@devicelab.hookimpl
def devicelab_register_metrics(register):
    register(Length)

@devicelab.hookimpl
def devicelab_register_engines(register):
    register(EchoEngine)

@devicelab.hookimpl
def devicelab_register_models(register):
    register(ModelSpec("echo-1", "echo", "none"))

@devicelab.hookimpl
def devicelab_register_corpora(register):
    register(CorpusSpec("lab-corpus", Path({corpus!r}), "two tiny documents"))

@devicelab.hookimpl
def devicelab_register_collectors(register):
    register("ticks", lambda device: Ticks() if device.kind == "bench" else None)

@devicelab.hookimpl
def devicelab_register_commands(cli):
    @cli.command()
    def hello():
        """Say hello."""
        print("hello from lab")
'''


@pytest.fixture
def lab(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The LAB plugin installed through a real entry point, with its corpus."""
    from wordsplugin import make_corpus

    corpus = make_corpus(tmp_path / "lab.jsonl")
    install_plugin(site, "lab", LAB_PLUGIN.format(corpus=str(corpus)))
    monkeypatch.setenv("DEVICELAB_PLUGINS", "docassist,lab")
    return corpus


def test_each_register_hook_feeds_the_registry(lab: Path) -> None:
    """devicelab_register_devices, devicelab_register_engines, devicelab_register_models,
    devicelab_register_corpora, devicelab_register_collectors and devicelab_register_metrics,
    each tagged with its plugin."""
    reg = plugin_manager.get_registry()
    assert reg.devices["bench"][0] == "lab"
    assert reg.engines[("echo", "bench")][0] == "lab"
    assert reg.models["echo-1"][1].engine == "echo"
    assert reg.corpora["lab-corpus"][1].path == lab
    assert reg.collectors["ticks"][0] == "lab"
    assert reg.metrics["length"][0] == "lab"
    row = next(r for r in reg.summary() if r["name"] == "lab")
    assert row["registered"] == {
        "devices": ["bench"],
        "engines": ["echo (bench)"],
        "models": ["echo-1"],
        "corpora": ["lab-corpus"],
        "collectors": ["ticks"],
        "metrics": ["length"],
    }


def test_registered_parts_run_together(lab: Path, tmp_path: Path) -> None:
    """A scenario naming the plugin's device, model, corpus and metric runs, with its
    collector; the metric scores each output in the scoring process."""
    from devicelab._rundir import TELEMETRY, read_jsonl
    from devicelab.testing import make_scenario, run_scenario

    path = make_scenario(
        tmp_path, kinds=["SUMM"], model="echo-1", device="bench0", documents="lab-corpus",
        lengths=[10], max_documents=2,
        extra='[telemetry]\ninterval_s = 0.01\n[quality]\nmetrics = ["length"]',
    )  # fmt: skip
    out = tmp_path / "run"
    records = run_scenario(path, out=out)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert {r["doc_id"] for r in records} == {"doc0", "doc1"}
    assert records[0]["device"] == "bench0" and records[0]["engine"] == "echo"
    assert all(r["quality"]["words"] == r["output_tokens"] for r in records)
    assert any(s.get("ticks") == 1 for s in read_jsonl(out / TELEMETRY))


def test_register_commands_adds_a_subcommand(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """devicelab_register_commands receives the click group; the command runs from main()."""
    from devicelab._cli import cli, main

    try:
        main(["hello"])
        assert capsys.readouterr().out == "hello from lab\n"
    finally:
        cli.commands.pop("hello", None)


def test_plugin_engine_options_are_checked_by_name(lab: Path, tmp_path: Path) -> None:
    from devicelab._errors import ScenarioError
    from devicelab.testing import make_scenario, run_scenario

    path = make_scenario(
        tmp_path, kinds=["SUMM"], model="echo-1", device="bench0", documents="lab-corpus",
        lengths=[10], model_options={"threads": 2},
    )  # fmt: skip
    with pytest.raises(
        ScenarioError, match=r"unknown option 'threads'. Options accepted here: none"
    ):
        run_scenario(path)


def test_two_distributions_with_one_entry_point_name(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(site, "kw", TASK_PLUGIN.format(kind="KW"))
    install_plugin(site, "kw2", TASK_PLUGIN.format(kind="KW2"))
    # A second distribution that claims the entry-point name "kw" for another module.
    info = site / "devicelab_other-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: devicelab-other\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[devicelab]\nkw = devicelab_kw2_test\n")
    monkeypatch.setenv("DEVICELAB_PLUGINS", "kw")
    with pytest.raises(PluginError, match=r"entry-point name 'kw'.*Uninstall one of them"):
        plugin_manager.get_registry()


@pytest.mark.usefixtures("broken")
def test_broken_plugin_leaves_the_cli_usable(capsys: pytest.CaptureFixture[str]) -> None:
    """The import error names the entry point; a scenario needing its task says it is broken."""
    from devicelab._cli import main

    main(["plugins"])
    text = capsys.readouterr().out
    assert "broken: failed to load entry point devicelab_broken_test" in text
    assert "tasks: SUMM" in text
