from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from wordsplugin import WordsPlugin, write_scenario

from devicelab import _plugins as plugin_manager
from devicelab._errors import CorpusError, ModelError, ScenarioError
from devicelab._registry import Registry
from devicelab._runtime.resolve import resolve
from devicelab._scenario import TABLES, load_scenario, parse_scenario
from devicelab._toml import loads as toml_loads

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_scenarios_are_valid() -> None:
    for name in ("long_context", "smoke"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        assert sc.name == name
        assert sc.task_kinds == ("SUMM", "QS", "QA")
    sc = load_scenario(ROOT / "scenarios" / "long_context.toml")
    assert sc.lengths == (200, 400, 600, 800, 1000)
    assert sc.section_size == 200


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "repetitions = 2",
            "repetitions = 2\nrepetitons = 3",
            r"\[scenario\] repetitons: is not a known key",
        ),
        (
            "repetitions = 2",
            'repetitions = "two"',
            r'\[scenario\] repetitions: must be a whole number of at least 1, or "auto", not',
        ),
        (
            "repetitions = 2",
            "repetitions = 0",
            r"\[scenario\] repetitions: must be a whole number of at least 1",
        ),
        (
            "lengths = [10, 20]",
            "lengths = [10, 15, 20]",
            r"\[context\] lengths: 15 is not a whole number of sections",
        ),
        ("lengths = [10, 20]", "lengths = [10, 21]", r"cannot be cut into 2 equal sections"),
        ("lengths = [10, 20]", "lengths = [10, 10]", r"lists a length twice"),
        ("lengths = [10, 20]", 'lengths = ["ten"]', r"positive whole token counts"),
        (
            "max_output_tokens = 8",
            "max_output_tokens = 8.5",
            r"max_output_tokens: must be an integer",
        ),
        ('kinds = ["SUMM", "QA"]', "kinds = []", r"\[tasks\] kinds: is empty"),
        ("[telemetry]", "[telemetri]", r"\[telemetri\] is not a known table"),
        ("interval_s = 0.01", "interval_s = true", r"interval_s: must be an integer or a number"),
        ('name = "t"', 'name = "t', r"not valid TOML"),
    ],
)
def test_bad_values_name_file_table_and_key(
    words_scenario: Callable[..., Path], old: str, new: str, message: str
) -> None:
    path = _edit(words_scenario(), old, new)
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_missing_table_and_file(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, '[scenario]\nname = "x"\n')
    with pytest.raises(ScenarioError, match=r"\[\[models\]\] is missing"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ('kinds = ["SUMM", "QA"]', 'kinds = ["SUM"]', ScenarioError, r"unknown task 'SUM'.*SUMM"),
        ('name = "words-a"', 'name = "gpt-9"', ScenarioError, r"unknown model.*words-a"),
        ('name = "words-a"', 'name = "words-a"\nengine = "mlc"', ScenarioError, r"does not match"),
        ('name = "words-a"', 'name = "words-a"\nquant = "q8_0"', ScenarioError, r"quant 'q8_0'"),
        (
            'name = "words-a"',
            'name = "x"\npath = "x.gguf"\nengine = "nope"',
            ScenarioError,
            r"unknown engine 'nope'",
        ),
        (
            'name = "words-a"',
            'name = "words-a"\noptions = {n_ctxx = 1}',
            ScenarioError,
            r"unknown option 'n_ctxx'.*n_ctx",
        ),
        (
            'name = "words-a"',
            'name = "words-a"\noptions = {n_ctx = "big"}',
            ScenarioError,
            r"option 'n_ctx' must be int",
        ),
        (
            'documents = "corpus.jsonl"',
            'documents = "missing.jsonl"',
            CorpusError,
            r"missing.jsonl does not exist",
        ),
        (
            'documents = "corpus.jsonl"',
            'documents = "nothing"',
            ScenarioError,
            r"neither a registered corpus",
        ),
        (
            "[[models]]",
            '[device]\nname = "pixel"\n\n[[models]]',
            ScenarioError,
            r"no device called 'pixel'",
        ),
        (
            "[[models]]",
            '[device]\nname = "host"\noptions = {x = 1}\n\n[[models]]',
            ScenarioError,
            r"host device takes no options",
        ),
    ],
)
def test_names_checked_against_plugins(
    words_scenario: Callable[..., Path],
    words_registry: Registry,
    old: str,
    new: str,
    error: type[Exception],
    message: str,
) -> None:
    path = _edit(words_scenario(), old, new)
    with pytest.raises(error, match=message):
        resolve(load_scenario(path), words_registry)


def test_model_path_must_exist_and_be_gguf(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    path = _edit(
        words_scenario(), 'name = "words-a"', 'name = "mine"\npath = "m.gguf"\nengine = "llama.cpp"'
    )
    with pytest.raises(ModelError, match=r"m.gguf does not exist"):
        resolve(load_scenario(path), words_registry)
    (tmp_path / "m.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve(load_scenario(path), words_registry)


def test_device_profile_by_name_and_path(
    words_scenario: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = words_scenario()
    monkeypatch.setenv("DEVICELAB_DISABLE_PLUGINS", "android")
    pm, broken = plugin_manager.new_plugin_manager()
    plugin_manager.register_plugin(pm, WordsPlugin(), "words")
    registry = plugin_manager.build_registry(pm, broken)
    plan = resolve(load_scenario(path), registry, device=str(ROOT / "devices" / "host.toml"))
    assert plan.device_type.kind == "host"
    with pytest.raises(ScenarioError, match="needs the device kind 'android', which no loaded"):
        resolve(load_scenario(path), registry, device="s24")


def test_fingerprint_changes_with_what_is_measured(words_scenario: Callable[..., Path]) -> None:
    path = words_scenario()
    a = load_scenario(path).fingerprint()
    assert load_scenario(path).fingerprint() == a
    _edit(path, "repetitions = 2", "repetitions = 3")
    assert load_scenario(path).fingerprint() != a


PINNED = """\
[scenario]
name = "pinned"
repetitions = 2
timeout_s = 30

[[models]]
name = "smollm2-135m-instruct"
engine = "llama.cpp"
quant = "Q4_1"
options = { n_ctx = 1024 }

[tasks]
kinds = ["SUMM", "QA"]
documents = "docassist-mini"
max_documents = 1
temperature = 0

[context]
sections = 2
lengths = [200, 100]

[thermal]
cooldown_below_c = 40

[quality]
metrics = ["bleu"]
"""


def test_runs_started_before_the_declared_tables_still_resume(tmp_path: Path) -> None:
    """The fingerprint a run directory stores, computed before the tables were declared as
    models: it must not move, or older runs could not be resumed."""
    sc = load_scenario(write_scenario(tmp_path, PINNED))
    assert sc.fingerprint() == "34a1193131758801"
    assert list(sc.resolved()["tasks"]) == [
        "kinds", "documents", "max_output_tokens", "temperature", "qa_questions", "max_documents",
    ]  # fmt: skip
    assert sc.resolved()["thermal"]["cooldown_below_c"] == 40.0
    assert sc.resolved()["models"] == [
        {"name": "smollm2-135m-instruct", "engine": "llama.cpp", "quant": "q4_1", "options": {"n_ctx": 1024}}
    ]  # fmt: skip


def test_resolved_scenario_reads_back_as_the_same_scenario(tmp_path: Path) -> None:
    """The Ray plugin ships resolved() to its workers, which parse it again."""
    sc = load_scenario(write_scenario(tmp_path, PINNED))
    assert "quality" in sc.resolved()
    assert parse_scenario(sc.resolved(), sc.source) == sc
    plain = load_scenario(write_scenario(tmp_path, PINNED.replace('metrics = ["bleu"]', "")))
    assert "quality" not in plain.resolved()  # a scenario without metrics keeps its hash
    assert parse_scenario(plain.resolved(), plain.source) == plain


def _limited() -> list[tuple[str, str, float]]:
    return [
        (table, key, meta.ge)
        for table, model in TABLES.items()
        for key, info in model.model_fields.items()
        for meta in info.metadata
        if isinstance(meta, annotated_types.Ge)
    ]


def test_every_declared_limit_is_enforced_by_name(tmp_path: Path) -> None:
    assert len(_limited()) >= 10
    base = toml_loads(PINNED)
    for table, key, ge in _limited():
        data = toml_loads(PINNED)
        below = ge - 1 if isinstance(ge, int) else ge - 0.5
        if table == "models":
            data["models"][0][key] = below
        else:
            data.setdefault(table, {})[key] = below
        with pytest.raises(ScenarioError) as info:
            parse_scenario(data, tmp_path / "s.toml")
        shown = "models.0" if table == "models" else table
        assert (
            str(info.value)
            == f"{tmp_path / 's.toml'}: [{shown}] {key}: must be at least {ge:g}, not {below!r}."
        )
    assert parse_scenario(base, tmp_path / "s.toml").repetitions == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"device": "pixel"}, "[device]: must be a table, not a string ('pixel')."),
        ({"models": []}, "[[models]] must be an array of tables with at least one."),
        ({"models": [{"name": "x", "path": "x.gguf"}]}, '[models.0] engine: is required when a model is given by path. Add engine = "...".'),
        ({"models": [{"name": "x"}, {"name": "x"}]}, "[[models]] lists the same model, engine, quant and options twice."),
        ({"models": [{"name": "x", "qant": "q8_0"}]}, "[models.0] qant: is not a known key (known keys in [models.0]: engine, name, options, path, quant). Remove it or fix its spelling."),
        ({"quality": {"metrics": ["bleu"], "options": {"bleu": 1}}}, "[quality.options] bleu: must be a table ([quality.options.bleu]), not an integer."),
        ({"scenario": {"name": "x", "order": "random"}}, '[scenario] order: must be "sequential" or "interleaved", not \'random\'.'),
        ({"tasks": {"kinds": ["QA", "QA"], "documents": "d"}}, "[tasks] kinds: lists a task twice: ['QA', 'QA']."),
        ({"tasks": {"kinds": ["QA", 1], "documents": "d"}}, "[tasks] kinds: must be a list of strings, like [\"a\", \"b\"], not ['QA', 1]."),
        ({"context": {"lengths": [0, 10]}}, "[context] lengths: must be a list of positive whole token counts, not [0, 10]."),
    ],
)  # fmt: skip
def test_each_mistake_gets_one_message(tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    data = {**toml_loads(PINNED), **edit}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, tmp_path / "s.toml")
    assert str(info.value) == f"{tmp_path / 's.toml'}: {message}"


def test_max_cv_defaults_to_10_and_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    sc = load_scenario(write_scenario(tmp_path, PINNED))
    assert sc.max_cv == 10.0 and sc.resolved()["scenario"]["max_cv"] == 10.0
    strict = load_scenario(
        write_scenario(tmp_path, PINNED.replace("timeout_s = 30", "timeout_s = 30\nmax_cv = 5"))
    )
    assert strict.max_cv == 5.0
    # A threshold of the views, not part of what is measured: a run resumes with another.
    assert strict.fingerprint() == sc.fingerprint()
    with pytest.raises(
        ScenarioError, match=r"\[scenario\] max_cv: must be an integer or a number, not a string"
    ):
        parse_scenario({**toml_loads(PINNED), "scenario": {"name": "x", "max_cv": "5%"}}, sc.source)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"repetitions": 3, "max_repetitions": 8}, '[scenario] max_repetitions: applies only with repetitions = "auto", not 3. Set repetitions = "auto", or remove max_repetitions.'),
        ({"repetitions": 3, "adaptive_metrics": ["otps"]}, '[scenario] adaptive_metrics: applies only with repetitions = "auto", not 3. Set repetitions = "auto", or remove adaptive_metrics.'),
        ({"min_repetitions": 9, "max_repetitions": 8}, "[scenario] min_repetitions: 9 is above max_repetitions 8. Raise max_repetitions or lower min_repetitions."),
        ({"adaptive_metrics": ["peak_mem_mb", "tps"]}, "[scenario] adaptive_metrics: 'peak_mem_mb', 'tps' cannot decide. List fields summarised by their median: itps, otps, ttft_s, runtime_s, energy_j, itl_p50_ms, itl_p90_ms, itl_p99_ms, tpot_ms, decode_tps_first_q, decode_tps_last_q."),
        ({"adaptive_metrics": []}, "[scenario] adaptive_metrics: is empty. List fields summarised by their median: itps, otps, ttft_s, runtime_s, energy_j, itl_p50_ms, itl_p90_ms, itl_p99_ms, tpot_ms, decode_tps_first_q, decode_tps_last_q."),
        ({"target_ci_pct": 0}, "[scenario] target_ci_pct: must be above 0, not 0."),
        ({"repetitions": "many"}, '[scenario] repetitions: must be a whole number of at least 1, or "auto", not \'many\'.'),
    ],
)  # fmt: skip
def test_adaptive_repetitions_reject_a_bad_combination_naming_the_fix(
    tmp_path: Path, keys: dict[str, Any], message: str
) -> None:
    data = toml_loads(PINNED)
    data["scenario"] = {"name": "auto", "repetitions": "auto", **keys}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, tmp_path / "s.toml")
    assert str(info.value) == f"{tmp_path / 's.toml'}: {message}"


def test_an_adaptive_scenario_resolves_and_reads_back(tmp_path: Path) -> None:
    text = PINNED.replace("repetitions = 2", 'repetitions = "auto"\ntarget_ci_pct = 3')
    sc = load_scenario(write_scenario(tmp_path, text))
    assert sc.adaptive and sc.most_repetitions == 15 and sc.min_repetitions == 3
    assert sc.target_ci_pct == 3.0 and sc.adaptive_metrics == ()
    assert parse_scenario(sc.resolved(), sc.source) == sc  # as a Ray worker reads it
    looser = load_scenario(
        write_scenario(tmp_path, text.replace("target_ci_pct = 3", "target_ci_pct = 5"), "b.toml")
    )
    assert looser.fingerprint() != sc.fingerprint()  # what a run measures to: a new run
    fixed = load_scenario(write_scenario(tmp_path, PINNED, "c.toml"))
    assert not fixed.adaptive and fixed.most_repetitions == 2
