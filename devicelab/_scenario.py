"""Scenario files: TOML in, a validated :class:`Scenario` out.

The tables are declared once, as the pydantic models below (one per table, in
:data:`TABLES`): each key's type, default, limits and description. Validation, the defaults of
:class:`Scenario`, the resolved scenario.toml (:meth:`Scenario.resolved`) and the README's
table (:mod:`devicelab._readmedoc`) all come from them. pydantic, not hand-written checks:
:mod:`devicelab._validation` says why.

Every error names the file, the table and the key, and says how to fix it. Checks that need
plugins (engine, task, corpus and device names) live in the scheduler's resolution; checks
that need a loaded model (the context window) run before the first trial.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ._errors import ScenarioError
from ._metrics import DEFAULT_MAX_CV
from ._predict import PredictionTable
from ._scenarioerrors import As, Each, explain, fail
from ._stopping import DECIDING
from ._sustained import MAX_TRIALS, SustainedTable, check_table
from ._toml import TOMLDecodeError, read_toml
from ._validation import STRICT, as_toml, type_name

_STRINGS = Each('must be a list of strings, like ["a", "b"]')


class _Table(BaseModel):
    model_config = STRICT
    # Written to scenario.toml even when nothing in it differs from the defaults.
    written_when_default: ClassVar[bool] = True


class ScenarioTable(_Table):
    name: str = Field(description="shown in reports")
    description: str = ""
    repetitions: int | Literal["auto"] = Field(
        3,
        description='measured trials per cell, or "auto": repeat each cell until the 95 % '
        "confidence interval of its median (distribution-free, from order statistics) is "
        "within ± `target_ci_pct` of the median for every speed field it measured, or "
        "`max_repetitions` is reached; the interval needs 6 values, so a cell of one "
        "document stops after 6 repetitions at the earliest (see docs/repetitions.md)",
    )
    min_repetitions: int = Field(
        3, ge=1, description='with `repetitions = "auto"`: never fewer per cell'
    )
    max_repetitions: int = Field(
        15, ge=1, description='with `repetitions = "auto"`: never more per cell'
    )
    target_ci_pct: float = Field(
        5.0,
        gt=0,
        description='with `repetitions = "auto"`: how far from the median (in %) the 95 % '
        "interval may reach",
    )
    adaptive_metrics: Annotated[list[str] | None, _STRINGS] = Field(
        None,
        description='with `repetitions = "auto"`: the fields that decide (default: every one '
        "of itps, otps, ttft_s, runtime_s, energy_j that a cell measured)",
    )
    warmup: int = Field(
        1,
        ge=0,
        description="warm-up trials after each model load, on the first task, document and "
        "L; recorded with `warmup = true`, left out of summaries",
    )
    timeout_s: float = Field(300.0, ge=0.001, description="per trial")
    retries: int = Field(2, ge=0, description="reruns of a trial whose device was lost")
    reconnect_timeout_s: float = Field(
        60.0, ge=0, description="how long to wait for a lost device to come back"
    )
    seed: int = 0
    order: Literal["sequential", "interleaved"] = Field(
        "sequential",
        description="\"interleaved\" runs each model's repetitions round-robin: every cell's "
        "repetition 0, then every cell's repetition 1, ..., after the warm-ups, so thermal "
        "drift spreads over all variants; trial ids are the same, so a run resumes in either "
        "order",
    )
    executor: str = Field("local", description='"ray" spreads trials over a cluster')
    allow_prefix_cache: bool = Field(
        False,
        description="keep a trial whose engine says it served part of the prompt from a "
        "cache (`prefix_cached = true`); by default such a trial fails, since its ITPS and "
        "TTFT are not a cold prefill's",
    )
    max_cv: float = Field(
        DEFAULT_MAX_CV,
        ge=0,
        description="in %: a cell where a median field's CV (sample stdev / mean) is above it, "
        "or with a noisy trial, is marked unstable in the summary, the report and compare",
    )

    @field_validator("repetitions", mode="before")
    @classmethod
    def _repetitions(cls, value: Any) -> Any:
        # Checked before pydantic's union of the two, whose own messages would name types.
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise fail(f'must be a whole number of at least 1, or "auto", not {value!r}.')

    @model_validator(mode="after")
    def _adaptive(self) -> ScenarioTable:
        fields = type(self).model_fields
        if self.repetitions != "auto":
            for key in ("min_repetitions", "max_repetitions", "target_ci_pct"):
                if getattr(self, key) != fields[key].default:
                    raise fail(
                        f'applies only with repetitions = "auto", not {self.repetitions}. '
                        f'Set repetitions = "auto", or remove {key}.',
                        key,
                    )
            if self.adaptive_metrics is not None:
                raise fail(
                    f'applies only with repetitions = "auto", not {self.repetitions}. Set '
                    'repetitions = "auto", or remove adaptive_metrics.',
                    "adaptive_metrics",
                )
            return self
        if self.min_repetitions > self.max_repetitions:
            raise fail(
                f"{self.min_repetitions} is above max_repetitions {self.max_repetitions}. "
                "Raise max_repetitions or lower min_repetitions.",
                "min_repetitions",
            )
        if self.adaptive_metrics is not None:
            unknown = [m for m in self.adaptive_metrics if m not in DECIDING]
            if unknown or not self.adaptive_metrics:
                what = f"{', '.join(map(repr, unknown))} cannot decide" if unknown else "is empty"
                raise fail(
                    f"{what}. List fields summarised by their median: {', '.join(DECIDING)}.",
                    "adaptive_metrics",
                )
        return self


class DeviceTable(_Table):
    name: Annotated[str, As("device")] = Field(
        "host", description="or a profile in `devices/`, or a path to one"
    )
    options: Annotated[dict[str, Any], As("device_options")] = Field(
        default_factory=dict, description="checked by the device's kind"
    )


class ModelTable(_Table):
    name: str = Field(description='a registered model, or any name with `path = "file.gguf"`')
    engine: str = Field("", description="required with `path`")
    quant: str = ""
    path: str | None = Field(None, description="relative to the scenario file")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the engine's `Options`; llama.cpp's: `threads` (default: the physical "
        "cores), `n_ctx` 2048, `n_batch` 512, `use_mmap`. A list for an option whose type is "
        "not a list is a sweep: `threads = [1, 2]` runs each value as its own variant "
        "(several lists: every combination), named in trial ids and every view",
    )

    @field_validator("quant")
    @classmethod
    def _lower(cls, quant: str) -> str:
        return quant.lower()

    @model_validator(mode="after")
    def _engine_with_path(self) -> ModelTable:
        if self.path is not None and not self.engine:
            raise fail('is required when a model is given by path. Add engine = "...".', "engine")
        return self


class TasksTable(_Table):
    kinds: Annotated[list[str], _STRINGS, As("task_kinds")] = Field(
        description="SUMM, QS, QA or a plugin's"
    )
    documents: str = Field(
        description="a corpus name such as `docassist-mini`, or a `.jsonl` path; see docs/corpus.md"
    )
    max_output_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    qa_questions: int = Field(1, ge=1)
    doc_ids: Annotated[list[str] | None, _STRINGS] = Field(
        None, description="only the documents with these ids"
    )
    max_documents: int | None = Field(None, ge=1, description="at most this many documents")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise fail('is empty. List at least one task, e.g. ["SUMM", "QS", "QA"].')
        if len(set(kinds)) != len(kinds):
            raise fail(f"lists a task twice: {kinds}.")
        return kinds


_LENGTHS = "must be a list of positive whole token counts"


class ContextTable(_Table):
    sections: int = Field(5, ge=1)
    lengths: Annotated[list[PositiveInt], Each(_LENGTHS)] = Field(
        description="each document is tokenised with the model's own tokenizer and cut into "
        "`sections` sections of max(lengths)/sections tokens; a trial at length L gets the "
        "first L/size sections"
    )

    @field_validator("lengths")
    @classmethod
    def _lengths(cls, lengths: list[int]) -> list[int]:
        if not lengths:
            raise fail(f"{_LENGTHS}, not [].")
        if len(set(lengths)) != len(lengths):
            raise fail(f"lists a length twice: {lengths!r}.")
        return sorted(lengths)

    @model_validator(mode="after")
    def _sections_divide(self) -> ContextTable:
        top, sections = max(self.lengths), self.sections
        if top % sections:
            raise fail(
                f"the largest length {top} cannot be cut into {sections} equal sections "
                f"({top} / {sections} is not whole). Make it a multiple of {sections}, or "
                "change [context] sections.",
                "lengths",
            )
        size = top // sections
        for length in self.lengths:
            if length % size:
                multiples = ", ".join(str(size * k) for k in range(1, sections + 1))
                raise fail(
                    f"{length} is not a whole number of sections: with sections = {sections} "
                    f"and a largest length of {top}, each section is {size} tokens, so "
                    f"lengths must be among {multiples}.",
                    "lengths",
                )
        return self


class TelemetryTable(_Table):
    enabled: Annotated[bool, As("telemetry_enabled")] = True
    interval_s: Annotated[float, As("telemetry_interval_s")] = Field(0.1, ge=0.001)


class ThermalTable(_Table):
    cooldown_below_c: float | None = Field(
        None,
        ge=-273.15,
        description="before each trial, wait while the hottest sensor's `temp_c` is at or above "
        "it (none: never wait)",
    )
    cooldown_timeout_s: float = Field(
        120.0, ge=0, description="after this long, start the trial anyway"
    )
    cooldown_poll_s: float = Field(
        1.0, ge=0.001, description="how often the temperature is read while waiting"
    )


class NoiseTable(_Table):
    # Only when a key differs from its default, so scenarios written before [noise] keep
    # their fingerprint and their runs still resume.
    written_when_default: ClassVar[bool] = False
    max_other_cpu_pct: float = Field(
        10.0,
        ge=0,
        le=100,
        description="a trial is `noisy` when anything but the engine used more than this "
        "share of the device's CPU time (all cores) while it ran (`other_cpu_pct`). 10 is "
        "well above an idle desktop's or phone's background (1-5 %) and a fifth of one core "
        "on a 2-core host (one core of a 10-core phone): llama.cpp's threads wait for each "
        "other at every barrier, so far less than a whole busy core slows every token",
    )
    on_noisy: Literal["flag", "retry", "fail"] = Field(
        "retry",
        description='"retry": wait (at most `quiet_timeout_s`) for the device to be quiet, '
        "run the trial again (at most `retries` times; the noisy attempts' figures go to "
        '`noisy_attempts`), and flag it if still noisy; "flag": keep the trial, marked; '
        '"fail": fail the trial',
    )
    retries: Annotated[int, As("noise_retries")] = Field(
        2, ge=0, description='reruns of a noisy trial with `on_noisy = "retry"`'
    )
    quiet_timeout_s: float = Field(
        30.0,
        ge=0,
        description="how long to wait for a busy device to be quiet before a rerun; after a "
        "wait that times out, noisy trials are flagged without waiting until one is quiet",
    )


class QualityTable(_Table):
    # Only when metrics are set, so scenarios without metrics keep their fingerprint.
    written_when_default: ClassVar[bool] = False
    metrics: Annotated[list[str], _STRINGS, As("quality_metrics")] = Field(
        default_factory=list,
        description="`bleu`, `rouge`, `sts`, `self_bleu`, `geval` or a plugin's",
    )
    options: Annotated[dict[str, Any], As("quality_options")] = Field(
        default_factory=dict,
        description="a `[quality.options.NAME]` table per metric; see docs/quality.md",
    )

    @model_validator(mode="after")
    def _options_per_metric(self) -> QualityTable:
        if len(set(self.metrics)) != len(self.metrics):
            raise fail(f"lists a metric twice: {self.metrics}.", "metrics")
        for name, table in self.options.items():
            if not isinstance(table, dict):
                raise fail(
                    f"must be a table ([quality.options.{name}]), not {type_name(type(table))}.",
                    name,
                    "quality.options",
                )
            if name not in self.metrics:
                listed = ", ".join(self.metrics) or "none listed"
                raise fail(
                    f"{name!r} is not in [quality] metrics ({listed}). Add it to metrics or "
                    "remove the table.",
                    table=f"quality.options.{name}",
                )
        return self


class StoreTable(_Table):
    # Only when set: where results are kept changes nothing a run measures.
    written_when_default: ClassVar[bool] = False
    ingest: Annotated[bool, As("store_ingest")] = Field(
        False,
        description="store each trial in the results database as it finishes (as `run --db`); "
        "see docs/store.md",
    )
    db: Annotated[str | None, As("store_db")] = Field(
        None,
        description="the results database (a path, relative to the scenario file, or a store "
        "plugin's URL; none: `$DEVICELAB_DB`, else the default)",
    )


class ScenarioFile(_Table):
    """A whole scenario file; table order is the order of the resolved scenario.toml."""

    scenario: ScenarioTable
    device: DeviceTable = DeviceTable()
    models: list[ModelTable] = Field(min_length=1)
    tasks: TasksTable
    context: ContextTable
    telemetry: TelemetryTable = TelemetryTable()
    thermal: ThermalTable = ThermalTable()
    sustained: SustainedTable = SustainedTable()
    noise: NoiseTable = NoiseTable()
    quality: QualityTable = QualityTable()
    store: StoreTable = StoreTable()
    prediction: PredictionTable = PredictionTable()

    @model_validator(mode="after")
    def _models_differ(self) -> ScenarioFile:
        # The same model, engine and quant may come twice with different options (a variant
        # each, named by the options that differ: see the scenario's resolution).
        keys = [
            (m.name, m.engine, m.quant, json.dumps(m.options, sort_keys=True, default=str))
            for m in self.models
        ]
        if len(set(keys)) != len(keys):
            raise fail(
                "[[models]] lists the same model, engine, quant and options twice.", table=""
            )
        check_table(self.sustained, "sustained" in self.model_fields_set, self.scenario)
        return self


TABLES: dict[str, type[_Table]] = {
    name: ModelTable if name == "models" else typing.cast(type[_Table], info.annotation)
    for name, info in ScenarioFile.model_fields.items()
}


def _attr(table: str, key: str) -> str:
    """The :class:`Scenario` attribute ``[table] key`` fills."""
    marks = TABLES[table].model_fields[key].metadata
    return next((m.attr for m in marks if isinstance(m, As)), key)


def _default(table: str, key: str) -> Any:
    return TABLES[table].model_fields[key].default


@dataclass(frozen=True)
class ModelEntry:
    name: str
    engine: str
    quant: str
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


_LATER_KEYS = (
    ("scenario", "allow_prefix_cache"),
    ("scenario", "min_repetitions"),
    ("scenario", "max_repetitions"),
    ("scenario", "target_ci_pct"),
)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, one attribute per key (defaults from the tables above); required
    keys default to empty here only so tests can build one by hand."""

    source: Path
    name: str
    description: str = _default("scenario", "description")
    # A number, or "auto" (adaptive: see devicelab._stopping).
    repetitions: int | Literal["auto"] = _default("scenario", "repetitions")
    min_repetitions: int = _default("scenario", "min_repetitions")
    max_repetitions: int = _default("scenario", "max_repetitions")
    target_ci_pct: float = _default("scenario", "target_ci_pct")
    adaptive_metrics: tuple[str, ...] = ()
    warmup: int = _default("scenario", "warmup")
    timeout_s: float = _default("scenario", "timeout_s")
    retries: int = _default("scenario", "retries")
    reconnect_timeout_s: float = _default("scenario", "reconnect_timeout_s")
    seed: int = _default("scenario", "seed")
    device: str = _default("device", "name")
    device_options: dict[str, Any] = field(default_factory=dict)
    models: tuple[ModelEntry, ...] = ()
    task_kinds: tuple[str, ...] = ()
    documents: str = ""
    doc_ids: tuple[str, ...] = ()
    max_documents: int | None = _default("tasks", "max_documents")
    max_output_tokens: int = _default("tasks", "max_output_tokens")
    temperature: float = _default("tasks", "temperature")
    qa_questions: int = _default("tasks", "qa_questions")
    sections: int = _default("context", "sections")
    lengths: tuple[int, ...] = ()
    telemetry_enabled: bool = _default("telemetry", "enabled")
    telemetry_interval_s: float = _default("telemetry", "interval_s")
    order: str = _default("scenario", "order")
    cooldown_below_c: float | None = _default("thermal", "cooldown_below_c")
    cooldown_timeout_s: float = _default("thermal", "cooldown_timeout_s")
    cooldown_poll_s: float = _default("thermal", "cooldown_poll_s")
    sustained_duration_s: float | None = None
    sustained_trials: int | None = None
    sustained_bin_s: float = _default("sustained", "bin_s")
    # Who runs the trials ("local", "ray", ...); checked against the registered executors.
    executor: str = _default("scenario", "executor")
    allow_prefix_cache: bool = _default("scenario", "allow_prefix_cache")
    max_cv: float = _default("scenario", "max_cv")
    max_other_cpu_pct: float = _default("noise", "max_other_cpu_pct")
    on_noisy: str = _default("noise", "on_noisy")
    noise_retries: int = _default("noise", "retries")
    quiet_timeout_s: float = _default("noise", "quiet_timeout_s")
    # [quality]: the quality metrics scored on each ok trial, and each one's options table.
    quality_metrics: tuple[str, ...] = ()
    quality_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [store]: whether the run stores its trials in a results database, and which one.
    store_ingest: bool = _default("store", "ingest")
    store_db: str | None = _default("store", "db")
    # [prediction]: how far from its prediction a cell may be before it is named.
    prediction_band_pct: float = _default("prediction", "band_pct")

    @property
    def adaptive(self) -> bool:
        """Whether each cell repeats until its median is known well enough."""
        return self.repetitions == "auto"

    @property
    def sustained(self) -> bool:
        """Whether each cell runs back to back (``[sustained]``, see devicelab._sustained)."""
        return self.sustained_duration_s is not None or self.sustained_trials is not None

    @property
    def most_repetitions(self) -> int:
        """The repetitions of a cell at most: all of them, unless adaptive or timed."""
        if self.sustained:
            return self.sustained_trials or MAX_TRIALS
        return self.max_repetitions if self.repetitions == "auto" else self.repetitions

    @property
    def section_size(self) -> int:
        return max(self.lengths) // self.sections

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as written to the run's scenario.toml:
        each table's keys in declared order; an optional key (default none) only when set."""
        body: dict[str, Any] = {}
        for name, table in TABLES.items():
            if name == "models":
                body[name] = [
                    {k: v for k, v in asdict(m).items() if v is not None} for m in self.models
                ]
                continue
            section: dict[str, Any] = {}
            for key, info in table.model_fields.items():
                value = getattr(self, _attr(name, key))
                if info.default is None and value in (None, ()):
                    continue
                section[key] = as_toml(value)
            if table.written_when_default or section != {
                k: v for k, v in table().model_dump().items() if v is not None
            }:
                body[name] = section
        return body

    def fingerprint(self) -> str:
        """A hash of what the run measures; a run directory only resumes the same scenario."""
        body = self.resolved()
        body["scenario"].pop("description", None)
        # The run order changes when a trial runs, not what it measures: a run resumes in
        # either order. Without a cooldown the thermal keys change nothing, so runs made
        # before [thermal] existed keep their fingerprint.
        body["scenario"].pop("order", None)
        # Nor does the executor: a run started locally may be resumed on a cluster.
        body["scenario"].pop("executor", None)
        # Nor does max_cv: it is what the views call unstable.
        body["scenario"].pop("max_cv", None)
        # Nor where its results are stored, nor how far from a prediction is a miss.
        body.pop("store", None)
        body.pop("prediction", None)
        if self.cooldown_below_c is None:
            body.pop("thermal", None)
        # Keys added later leave the fingerprint alone at their default, so runs made before
        # them still resume.
        for table, key in _LATER_KEYS:
            if body.get(table, {}).get(key) == _default(table, key):
                body[table].pop(key)
        data = json.dumps(body, sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def with_device(self, device: str) -> Scenario:
        return replace(self, device=device)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (everything that needs no plugin)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(
            f"scenario file {path} does not exist. Give the path to a .toml file, for "
            "example scenarios/long_context.toml."
        )
    try:
        data = read_toml(path)
    except TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}. Fix the syntax.") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file. Save it as UTF-8 TOML.") from None
    return parse_scenario(data, path)


def parse_scenario(data: dict[str, Any], path: Path) -> Scenario:
    try:
        file = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # Tables are checked one after another; an unknown table is named before them all.
        first = min(errors, key=lambda e: (e["type"], len(e["loc"])) != ("extra_forbidden", 1))
        raise ScenarioError(f"{path}: {explain(first, data, TABLES)}") from None
    values: dict[str, Any] = {}
    for name in TABLES:
        if name != "models":
            section = getattr(file, name)
            for key in type(section).model_fields:
                value = getattr(section, key)
                values[_attr(name, key)] = tuple(value) if isinstance(value, list) else value
    documents = file.tasks.documents
    if documents.endswith(".jsonl") and not Path(documents).is_absolute():
        values["documents"] = str((path.parent / documents).resolve())
    values["doc_ids"] = values["doc_ids"] or ()
    db = values["store_db"]
    if db and "://" not in db and not Path(db).expanduser().is_absolute():
        values["store_db"] = str((path.parent / db).resolve())
    values["adaptive_metrics"] = values["adaptive_metrics"] or ()
    models = []
    for m in file.models:
        where = m.path
        if where is not None and not Path(where).is_absolute():
            where = str((path.parent / where).resolve())
        models.append(ModelEntry(m.name, m.engine, m.quant, where, m.options))
    return Scenario(source=path, models=tuple(models), **values)
