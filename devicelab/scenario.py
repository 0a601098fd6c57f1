"""Scenario files: TOML in, a validated :class:`Scenario` out.

Every error names the file, the table and the key, and says how to fix it. Checks that need
plugins (engine, task, corpus and device names) live in :func:`check_against`; checks that
need a loaded model (the context window) run in the scheduler before the first trial.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ScenarioError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MISSING = object()
ORDERS = ("sequential", "interleaved")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    engine: str
    quant: str
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    source: Path
    name: str
    description: str = ""
    repetitions: int = 3
    warmup: int = 1
    timeout_s: float = 300.0
    retries: int = 2
    reconnect_timeout_s: float = 60.0
    seed: int = 0
    device: str = "host"
    device_options: dict[str, Any] = field(default_factory=dict)
    models: tuple[ModelEntry, ...] = ()
    task_kinds: tuple[str, ...] = ()
    documents: str = ""
    doc_ids: tuple[str, ...] = ()
    max_documents: int | None = None
    max_output_tokens: int = 128
    temperature: float = 0.0
    qa_questions: int = 1
    sections: int = 5
    lengths: tuple[int, ...] = ()
    telemetry_enabled: bool = True
    telemetry_interval_s: float = 0.1
    order: str = "sequential"
    cooldown_below_c: float | None = None
    cooldown_timeout_s: float = 120.0
    cooldown_poll_s: float = 1.0
    # Who runs the trials ("local", "ray", ...); checked against the registered executors.
    executor: str = "local"
    # [quality]: the quality metrics scored on each ok trial, and each one's options table.
    quality_metrics: tuple[str, ...] = ()
    quality_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def section_size(self) -> int:
        return max(self.lengths) // self.sections

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as written to the run's scenario.toml."""
        models = []
        for m in self.models:
            entry = {k: v for k, v in asdict(m).items() if v is not None}
            models.append(entry)
        tasks: dict[str, Any] = {
            "kinds": list(self.task_kinds),
            "documents": self.documents,
            "max_output_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "qa_questions": self.qa_questions,
        }
        if self.doc_ids:
            tasks["doc_ids"] = list(self.doc_ids)
        if self.max_documents is not None:
            tasks["max_documents"] = self.max_documents
        thermal: dict[str, Any] = {
            "cooldown_timeout_s": self.cooldown_timeout_s,
            "cooldown_poll_s": self.cooldown_poll_s,
        }
        if self.cooldown_below_c is not None:
            thermal = {"cooldown_below_c": self.cooldown_below_c, **thermal}
        body: dict[str, Any] = {
            "scenario": {
                "name": self.name,
                "description": self.description,
                "repetitions": self.repetitions,
                "warmup": self.warmup,
                "timeout_s": self.timeout_s,
                "retries": self.retries,
                "reconnect_timeout_s": self.reconnect_timeout_s,
                "seed": self.seed,
                "order": self.order,
                "executor": self.executor,
            },
            "device": {"name": self.device, "options": self.device_options},
            "models": models,
            "tasks": tasks,
            "context": {"sections": self.sections, "lengths": list(self.lengths)},
            "telemetry": {
                "enabled": self.telemetry_enabled,
                "interval_s": self.telemetry_interval_s,
            },
            "thermal": thermal,
        }
        # Only when set, so scenarios without metrics keep their fingerprint.
        if self.quality_metrics:
            body["quality"] = {
                "metrics": list(self.quality_metrics),
                "options": {k: dict(v) for k, v in self.quality_options.items()},
            }
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
        if self.cooldown_below_c is None:
            body.pop("thermal", None)
        data = json.dumps(body, sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def with_device(self, device: str) -> Scenario:
        from dataclasses import replace

        return replace(self, device=device)


class _Table:
    """One TOML table being read: tracks which keys were used so the rest can be rejected."""

    def __init__(self, path: Path, name: str, data: Any, hint: str = "") -> None:
        self.path = path
        self.name = name
        self.hint = hint
        if not isinstance(data, dict):
            self.fail(None, f"must be a table, not {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def where(self, key: str | None) -> str:
        return f"{self.path}: [{self.name}]" + (f" {key}" if key else "")

    def fail(self, key: str | None, why: str) -> None:
        raise ScenarioError(f"{self.where(key)}: {why}{self.hint}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "is required but missing. Add it.")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        bad_bool = isinstance(value, bool) and bool not in kinds
        if bad_bool or not isinstance(value, kinds):
            names = " or ".join(_type_name(k) for k in kinds)
            self.fail(key, f"must be {names}, not {_type_name(type(value))} ({value!r}).")
        return value

    def number(self, key: str, default: Any, *, minimum: float, integer: bool = False) -> Any:
        value = self.get(key, int if integer else (int, float), default)
        if value is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}, not {value!r}.")
        return value

    def strings(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if value is None:
            return ()
        if not all(isinstance(v, str) for v in value):
            self.fail(key, f'must be a list of strings, like ["a", "b"], not {value!r}.')
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            self.fail(
                unknown[0],
                f"is not a known key (known keys in [{self.name}]: {known}). "
                "Remove it or fix its spelling.",
            )


def _type_name(t: type) -> str:
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(t, t.__name__)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (everything that needs no plugin)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(
            f"scenario file {path} does not exist. Give the path to a .toml file, for "
            "example scenarios/long_context.toml."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}. Fix the syntax.") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file. Save it as UTF-8 TOML.") from None
    return parse_scenario(data, path)


def parse_scenario(data: dict[str, Any], path: Path) -> Scenario:
    known_tables = {
        "scenario",
        "device",
        "models",
        "tasks",
        "context",
        "telemetry",
        "thermal",
        "quality",
    }
    for key in data:
        if key not in known_tables:
            raise ScenarioError(
                f"{path}: [{key}] is not a known table (known: "
                f"{', '.join(sorted(known_tables))}). Remove it or fix its spelling."
            )

    sc = _Table(path, "scenario", _required(data, path, "scenario"))
    name = sc.get("name", str)
    description = sc.get("description", str, "")
    repetitions = sc.number("repetitions", 3, minimum=1, integer=True)
    warmup = sc.number("warmup", 1, minimum=0, integer=True)
    timeout_s = float(sc.number("timeout_s", 300.0, minimum=0.001))
    retries = sc.number("retries", 2, minimum=0, integer=True)
    reconnect_timeout_s = float(sc.number("reconnect_timeout_s", 60.0, minimum=0))
    seed = sc.get("seed", int, 0)
    order = sc.get("order", str, "sequential")
    if order not in ORDERS:
        sc.fail("order", f'must be "sequential" or "interleaved", not {order!r}.')
    executor = sc.get("executor", str, "local")
    sc.done()

    dev = _Table(path, "device", data.get("device", {}))
    device = dev.get("name", str, "host")
    device_options = dev.get("options", dict, {})
    dev.done()

    raw_models = data.get("models", _MISSING)
    if raw_models is _MISSING:
        raise ScenarioError(
            f"{path}: [[models]] is missing. Add at least one, for example:\n"
            '[[models]]\nname = "smollm2-135m-instruct"\nengine = "llama.cpp"\nquant = "q4_1"'
        )
    if not isinstance(raw_models, list) or not raw_models:
        raise ScenarioError(f"{path}: [[models]] must be an array of tables with at least one.")
    models = []
    for i, raw in enumerate(raw_models):
        mt = _Table(path, f"models.{i}", raw)
        m_name = mt.get("name", str)
        m_path = mt.get("path", str, None)
        m_engine = mt.get("engine", str, "")
        if m_path is not None and not m_engine:
            mt.fail("engine", 'is required when a model is given by path. Add engine = "...".')
        m_quant = mt.get("quant", str, "")
        m_options = mt.get("options", dict, {})
        mt.done()
        if m_path is not None and not Path(m_path).is_absolute():
            m_path = str((path.parent / m_path).resolve())
        models.append(ModelEntry(m_name, m_engine, m_quant.lower(), m_path, m_options))
    keys = [(m.name, m.engine, m.quant) for m in models]
    if len(set(keys)) != len(keys):
        raise ScenarioError(f"{path}: [[models]] lists the same model, engine and quant twice.")

    tk = _Table(path, "tasks", _required(data, path, "tasks"))
    kinds = tk.strings("kinds")
    if not kinds:
        tk.fail("kinds", 'is empty. List at least one task, e.g. ["SUMM", "QS", "QA"].')
    if len(set(kinds)) != len(kinds):
        tk.fail("kinds", f"lists a task twice: {list(kinds)}.")
    documents = tk.get("documents", str)
    if documents.endswith(".jsonl") and not Path(documents).is_absolute():
        documents = str((path.parent / documents).resolve())
    doc_ids = tk.strings("doc_ids", None)
    max_documents = tk.number("max_documents", None, minimum=1, integer=True)
    max_output_tokens = tk.number("max_output_tokens", 128, minimum=1, integer=True)
    temperature = float(tk.number("temperature", 0.0, minimum=0))
    qa_questions = tk.number("qa_questions", 1, minimum=1, integer=True)
    tk.done()

    cx = _Table(path, "context", _required(data, path, "context"))
    sections = cx.number("sections", 5, minimum=1, integer=True)
    raw_lengths = cx.get("lengths", list)
    if not raw_lengths or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw_lengths
    ):
        cx.fail("lengths", f"must be a list of positive whole token counts, not {raw_lengths!r}.")
    lengths = tuple(sorted(set(raw_lengths)))
    if len(lengths) != len(raw_lengths):
        cx.fail("lengths", f"lists a length twice: {raw_lengths!r}.")
    cx.done()
    top = max(lengths)
    if top % sections:
        cx.fail(
            "lengths",
            f"the largest length {top} cannot be cut into {sections} equal sections "
            f"({top} / {sections} is not whole). Make it a multiple of {sections}, or change "
            "[context] sections.",
        )
    size = top // sections
    for length in lengths:
        if length % size:
            multiples = ", ".join(str(size * k) for k in range(1, sections + 1))
            cx.fail(
                "lengths",
                f"{length} is not a whole number of sections: with sections = {sections} "
                f"and a largest length of {top}, each section is {size} tokens, so lengths "
                f"must be among {multiples}.",
            )

    tm = _Table(path, "telemetry", data.get("telemetry", {}))
    telemetry_enabled = tm.get("enabled", bool, True)
    interval = float(tm.number("interval_s", 0.1, minimum=0.001))
    tm.done()

    th = _Table(path, "thermal", data.get("thermal", {}))
    below = th.number("cooldown_below_c", None, minimum=-273.15)
    cooldown_timeout_s = float(th.number("cooldown_timeout_s", 120.0, minimum=0))
    cooldown_poll_s = float(th.number("cooldown_poll_s", 1.0, minimum=0.001))
    th.done()

    quality_metrics, quality_options = _quality(path, data.get("quality", {}))

    return Scenario(
        source=path,
        name=name,
        description=description,
        repetitions=repetitions,
        warmup=warmup,
        timeout_s=timeout_s,
        retries=retries,
        reconnect_timeout_s=reconnect_timeout_s,
        seed=seed,
        device=device,
        device_options=device_options,
        models=tuple(models),
        task_kinds=tuple(kinds),
        documents=documents,
        doc_ids=doc_ids,
        max_documents=max_documents,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        qa_questions=qa_questions,
        sections=sections,
        lengths=lengths,
        telemetry_enabled=telemetry_enabled,
        telemetry_interval_s=interval,
        order=order,
        executor=executor,
        cooldown_below_c=None if below is None else float(below),
        cooldown_timeout_s=cooldown_timeout_s,
        cooldown_poll_s=cooldown_poll_s,
        quality_metrics=quality_metrics,
        quality_options=quality_options,
    )


def _quality(path: Path, data: Any) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """``[quality] metrics`` and the ``[quality.options.<name>]`` tables (names are checked
    against the registered metrics in the scheduler)."""
    ql = _Table(path, "quality", data)
    names = ql.strings("metrics", ())
    if len(set(names)) != len(names):
        ql.fail("metrics", f"lists a metric twice: {list(names)}.")
    options = ql.get("options", dict, {})
    ql.done()
    for name, table in options.items():
        if not isinstance(table, dict):
            raise ScenarioError(
                f"{path}: [quality.options] {name}: must be a table ([quality.options.{name}]), "
                f"not {_type_name(type(table))}."
            )
        if name not in names:
            raise ScenarioError(
                f"{path}: [quality.options.{name}]: {name!r} is not in [quality] metrics "
                f"({', '.join(names) or 'none listed'}). Add it to metrics or remove the table."
            )
    return names, {k: dict(v) for k, v in options.items()}


def _required(data: dict[str, Any], path: Path, name: str) -> Any:
    if name not in data:
        raise ScenarioError(
            f"{path}: the [{name}] table is missing. Add it (see scenarios/smoke.toml)."
        )
    return data[name]
