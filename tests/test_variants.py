"""Variants: engine option sweeps (a list in [models.options]), entries of one model that differ
in options or engine, and how trial ids, cells and every view name them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import WORDS_SCENARIO, WordEngine, WordsPlugin, make_corpus, run_cli

import devicelab
from devicelab import Engine, ScenarioError
from devicelab import _plugins as plugin_manager
from devicelab._advise import advise
from devicelab._compare import compare_by, compare_runs, engine_gaps
from devicelab._metrics import summarize
from devicelab._plugins import Registry
from devicelab._rundir import TRIALS, load_run, read_jsonl
from devicelab._runtime.pipeline import run_pipeline
from devicelab._runtime.resolve import accepts_list, resolve
from devicelab._scenario import load_scenario
from devicelab._table import summary_table
from devicelab.testing import installed_plugin


class OtherWords(WordEngine):
    """A second engine for the same models: as an app beside its engine's CLI."""

    name = "words2"


class ListWords(WordEngine):
    """An engine with a list-typed option: a list given for it is its value, not a sweep."""

    name = "listwords"

    @dataclass(frozen=True)
    class Options:
        n_ctx: int = 4096
        delay_s: float = 0.0
        stops: list[str] | None = None


class VariantEngines:
    @devicelab.hookimpl
    def devicelab_register_engines(self, register: Callable[[type[Engine]], None]) -> None:
        register(OtherWords)
        register(ListWords)


@pytest.fixture
def registry() -> Registry:
    pm, broken = plugin_manager.new_plugin_manager()
    plugin_manager.register_plugin(pm, WordsPlugin(), "words")
    plugin_manager.register_plugin(pm, VariantEngines(), "variants")
    return plugin_manager.build_registry(pm, broken)


@pytest.fixture
def cli_plugins(words_installed: None) -> Iterator[None]:
    with installed_plugin(VariantEngines(), "variants"):
        yield


def scenario(tmp_path: Path, models: str, reps: int = 1, warmup: int = 0) -> Path:
    """The words scenario (tests/wordsplugin.py) with ``models`` as its [[models]] tables."""
    make_corpus(tmp_path / "corpus.jsonl")
    body = WORDS_SCENARIO.format(
        model="words-a", reps=reps, warmup=warmup, timeout=30, kinds='["SUMM"]'
    )
    body = body.replace('[[models]]\nname = "words-a"\n', models)
    path = tmp_path / "s.toml"
    path.write_text(body, encoding="utf-8")
    return path


def run(path: Path, registry: Registry, out: Path) -> list[dict[str, Any]]:
    run_pipeline(path, registry, out=out)
    return list(read_jsonl(out / TRIALS))


SWEEP = """[[models]]
name = "words-a"
options = { delay_s = [0.0, 0.001] }
"""


def test_a_list_of_a_scalar_option_sweeps_it(tmp_path: Path, registry: Registry) -> None:
    plan = resolve(load_scenario(scenario(tmp_path, SWEEP)), registry)
    assert [(m.options.delay_s, m.variant) for m in plan.models] == [
        (0.0, "delay_s=0.0"),
        (0.001, "delay_s=0.001"),
    ]
    ids = [t.trial_id for t in plan.trials()]
    assert len(set(ids)) == len(ids) == 2 * 2 * 2  # two variants x two documents x two L
    assert ids[0] == "host/words-a/none/delay_s=0.0/SUMM/doc0/summary/L10/r0"
    assert ids[4] == "host/words-a/none/delay_s=0.001/SUMM/doc0/summary/L10/r0"


def test_several_lists_give_their_cartesian_product(tmp_path: Path, registry: Registry) -> None:
    models = (
        '[[models]]\nname = "words-a"\noptions = { n_ctx = [4096, 8192], delay_s = [0, 0.001] }\n'
    )
    plan = resolve(load_scenario(scenario(tmp_path, models)), registry)
    assert [m.variant for m in plan.models] == [
        "n_ctx=4096,delay_s=0.0",
        "n_ctx=4096,delay_s=0.001",
        "n_ctx=8192,delay_s=0.0",
        "n_ctx=8192,delay_s=0.001",
    ]


def test_a_swept_run_records_loads_and_summarises_each_variant(
    tmp_path: Path, registry: Registry
) -> None:
    WordEngine.loads = 0
    records = run(scenario(tmp_path, SWEEP, reps=2, warmup=1), registry, tmp_path / "run")
    assert WordEngine.loads == 2  # a model loads once per variant
    assert {r["variant"] for r in records} == {"delay_s=0.0", "delay_s=0.001"}
    loaded = [r["variant"] for r in records if r["load_s"] is not None]
    assert loaded == ["delay_s=0.0", "delay_s=0.001"]
    rows = summarize(load_run(tmp_path / "run").measured)
    assert {(r["variant"], r["context_tokens"]) for r in rows} == {
        (v, length) for v in ("delay_s=0.0", "delay_s=0.001") for length in (10, 20)
    }
    table = summary_table(rows)
    assert "variant" in [c.title for c in table.columns]
    assert "engine" not in [c.title for c in table.columns]  # one engine: nothing to tell
    # advise ranks the variants as candidates of their own
    [first, *_] = advise(load_run(tmp_path / "run"))
    assert {c.name for c in first.candidates} == {
        "words-a/none/delay_s=0.0",
        "words-a/none/delay_s=0.001",
    }


def test_a_list_for_a_list_typed_option_is_its_value(tmp_path: Path, registry: Registry) -> None:
    assert accepts_list(ListWords.Options, "stops")
    assert not accepts_list(ListWords.Options, "delay_s")
    assert not accepts_list(ListWords.Options, "n_ctx")

    @dataclass(frozen=True)
    class Named:
        app: str = "a"
        anything: Any = None
        pair: tuple[int, int] | None = None

    assert not accepts_list(Named, "app")  # app = ["mlcchat", "docassist"] sweeps
    assert accepts_list(Named, "anything") and accepts_list(Named, "pair")
    models = (
        '[[models]]\nname = "words-a"\nengine = "listwords"\n'
        'options = { stops = ["a", "b"], delay_s = [0, 0.001] }\n'
    )
    plan = resolve(load_scenario(scenario(tmp_path, models)), registry)
    assert [m.options.stops for m in plan.models] == [["a", "b"], ["a", "b"]]
    assert [m.variant for m in plan.models] == ["delay_s=0.0", "delay_s=0.001"]


def test_without_variants_trial_ids_and_views_are_as_they_were(
    tmp_path: Path, registry: Registry
) -> None:
    path = scenario(tmp_path, '[[models]]\nname = "words-a"\noptions = { delay_s = 0.0 }\n')
    plan = resolve(load_scenario(path), registry)
    assert [m.variant for m in plan.models] == [""]
    # The id format of every run made before variants existed, so --resume finds them.
    assert [t.trial_id for t in plan.trials()] == [
        "host/words-a/none/SUMM/doc0/summary/L10/r0",
        "host/words-a/none/SUMM/doc0/summary/L20/r0",
        "host/words-a/none/SUMM/doc1/summary/L10/r0",
        "host/words-a/none/SUMM/doc1/summary/L20/r0",
    ]
    run(path, registry, tmp_path / "run")
    rows = summarize(load_run(tmp_path / "run").measured)
    titles = [c.title for c in summary_table(rows).columns]
    assert titles[:4] == ["model", "quant", "task", "L"]


def test_entries_differing_in_fixed_options_are_variants(
    tmp_path: Path, registry: Registry
) -> None:
    models = (
        '[[models]]\nname = "words-a"\noptions = { delay_s = 0.001 }\n'
        '[[models]]\nname = "words-a"\noptions = { delay_s = 0.001, n_ctx = 8192 }\n'
    )
    plan = resolve(load_scenario(scenario(tmp_path, models)), registry)
    # Named by what differs; what they share is left out; an option left out is "default"
    # (a default may depend on the host, trial ids must not).
    assert [m.variant for m in plan.models] == ["n_ctx=default", "n_ctx=8192"]
    assert [m.options.n_ctx for m in plan.models] == [4096, 8192]


def test_the_same_options_twice_is_bad_input(tmp_path: Path, registry: Registry) -> None:
    models = (
        '[[models]]\nname = "words-a"\noptions = { delay_s = [0, 0.001] }\n'
        '[[models]]\nname = "words-a"\noptions = { delay_s = 0.001 }\n'
    )
    with pytest.raises(ScenarioError, match=r"'words-a' \(none\) on 'words' twice.*delay_s=0.001"):
        resolve(load_scenario(scenario(tmp_path, models)), registry)
    empty = '[[models]]\nname = "words-a"\noptions = { delay_s = [] }\n'
    with pytest.raises(ScenarioError, match=r"delay_s = \[\]: a list sweeps the option"):
        resolve(load_scenario(scenario(tmp_path, empty)), registry)


TWO_ENGINES = """[[models]]
name = "words-a"
[[models]]
name = "words-a"
engine = "words2"
options = { delay_s = 0.002 }
"""


def test_one_model_on_two_engines_is_two_cells(tmp_path: Path, registry: Registry) -> None:
    plan = resolve(load_scenario(scenario(tmp_path, TWO_ENGINES)), registry)
    assert [(m.spec.engine, m.variant, m.engine_in_id) for m in plan.models] == [
        ("words", "", True),
        ("words2", "", True),
    ]
    ids = [t.trial_id for t in plan.trials()]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "host/words-a/none/words/SUMM/doc0/summary/L10/r0"
    assert ids[-1] == "host/words-a/none/words2/SUMM/doc1/summary/L20/r0"

    run(scenario(tmp_path, TWO_ENGINES), registry, tmp_path / "r")
    data = load_run(tmp_path / "r")
    rows = summarize(data.measured)
    assert {(r["engine"], r["variant"]) for r in rows} == {("words", ""), ("words2", "")}
    assert "engine" in [c.title for c in summary_table(rows).columns]
    gaps = engine_gaps(data)
    # A: the engine of the first [[models]] entry; B: the other; per task and L.
    assert {(g.a, g.b, g.task, g.context_tokens) for g in gaps} == {
        ("words", "words2", "SUMM", 10),
        ("words", "words2", "SUMM", 20),
    }
    runtime = [g for g in gaps if g.metric == "runtime_s"]
    assert runtime and all(g.verdict == "worse" and g.note == "n<5" for g in runtime)


def test_compare_by_within_one_run_and_across_two(tmp_path: Path, registry: Registry) -> None:
    run(scenario(tmp_path, TWO_ENGINES, reps=5), registry, tmp_path / "r")
    data = load_run(tmp_path / "r")
    rows = compare_by(data, ["engine"], base="words2")
    assert {(r.a, r.b) for r in rows} == {("words2", "words")}
    slower = [r for r in rows if r.metric == "runtime_s"]
    # words2 sleeps 2 ms per token: 'words' is faster, significantly with 5 a side.
    assert slower and all(r.verdict == "better" and r.significant for r in slower)
    assert "engine" not in rows[0].cell and "variant" in rows[0].cell
    # Across two runs, --by adds keys to what cells are matched by.
    across = compare_runs(data, data, by=["doc_id"])
    assert {r.cell["doc_id"] for r in across} == {"doc0", "doc1"}
    with pytest.raises(devicelab.UsageError, match="--base 'nope'"):
        compare_by(data, ["engine"], base="nope")
    with pytest.raises(devicelab.UsageError, match="no measured trial has the record key"):
        compare_by(data, ["enigne"])


@pytest.mark.usefixtures("cli_plugins")
def test_cli_run_prints_the_engine_gap_and_compare_by_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario(tmp_path, TWO_ENGINES)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Engine gap" in printed and "words2" in printed
    assert run_cli(["compare", str(out), "--by", "engine", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["a"], r["b"]) for r in rows} == {("words", "words2")}
    assert run_cli(["compare", str(out), "--by", "engine"]) == 0
    assert "B=words2 vs A=words" in capsys.readouterr().out
    assert run_cli(["report", str(out)]) == 0
    assert "Engine gap" in (out / "report" / "report.html").read_text(encoding="utf-8")
    # Comparing within one run needs --by, and --by needs two values.
    assert run_cli(["compare", str(out)]) == 2
    assert run_cli(["compare", str(out), "--by", "task"]) == 2
    assert "needs two or more values" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_plugins")
def test_gate_names_carry_the_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario(tmp_path, SWEEP)), "--out", str(out)]) == 0
    capsys.readouterr()
    assert run_cli(["gate", str(out), str(out), "--fail", "otps:median:5%"]) == 3
    printed = capsys.readouterr().out
    assert "INCONCLUSIVE words-a/none/delay_s=0.001/SUMM/L10:otps:median:5%" in printed
