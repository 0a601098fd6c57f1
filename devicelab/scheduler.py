"""Scenario -> trial matrix -> run.

:func:`prepare` resolves a scenario against the loaded plugins and reads its inputs without
side effects, so bad input is reported before a run directory exists. :func:`execute` then
opens the device, loads each model once, runs the trials in order and appends each record
the moment it is finished.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import metrics
from .api import (
    Collector,
    Device,
    DeviceType,
    Document,
    Engine,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    Scored,
    Task,
    TaskPrompt,
    TokenStream,
    parse_options,
)
from .corpus import Sections, cut_sections, load_corpus
from .errors import (
    CorpusError,
    DevicelabError,
    DeviceLostError,
    ModelError,
    ScenarioError,
    TrialError,
    UsageError,
)
from .plugin_manager import Registry
from .quality import Scorer
from .results import RunDir, now_iso
from .scenario import Scenario, load_scenario, parse_scenario
from .telemetry import Sampler

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    engine_cls: type[Engine]
    options: Any


@dataclass(frozen=True)
class Trial:
    trial_id: str
    model: ResolvedModel
    task: str
    doc_id: str
    item: str
    context_tokens: int
    sections: int
    repetition: int
    warmup: bool


@dataclass
class Plan:
    """A scenario resolved against the plugins: everything needed to run, nothing run yet."""

    scenario: Scenario
    device_type: DeviceType
    device_name: str
    device_profile: dict[str, Any]
    models: list[ResolvedModel]
    tasks: dict[str, Task]
    documents: list[Document]
    collector_factories: dict[str, Callable[[Device], Collector | None]] = field(
        default_factory=dict
    )
    # [quality] metrics to score each ok trial with: name -> its raw options table (checked).
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def trials(self) -> Iterator[Trial]:
        """The trial matrix in run order: model, task, document, item, length, repetition.

        Each model's ``warmup`` warm-up trials come first, right after it loads, on the first
        task, document and length: they take the first-run costs (page faults of the mapped
        weights, cold caches, clock ramp-up) out of the measured trials. With ``[scenario]
        order = "interleaved"`` the measured trials go round-robin: every cell's repetition 0,
        then every cell's repetition 1, ..., so thermal drift spreads over all the variants.
        """
        sc = self.scenario
        for model in self.models:
            cells = [
                (kind, doc, prompt.item, length)
                for kind in sc.task_kinds
                for doc in self.documents
                for prompt in _items(self.tasks[kind], doc, sc.qa_questions)
                for length in sc.lengths
            ]
            runs = [(cells[0], rep, True) for rep in range(sc.warmup)]
            if sc.order == "interleaved":
                runs += [(cell, rep, False) for rep in range(sc.repetitions) for cell in cells]
            else:
                runs += [(cell, rep, False) for cell in cells for rep in range(sc.repetitions)]
            for (kind, doc, item, length), rep, warm in runs:
                yield Trial(
                    trial_id=_trial_id(
                        self.device_name, model.spec, kind, doc.id, item, length, rep, warm
                    ),
                    model=model,
                    task=kind,
                    doc_id=doc.id,
                    item=item,
                    context_tokens=length,
                    sections=length // sc.section_size,
                    repetition=rep,
                    warmup=warm,
                )


def _items(task: Task, doc: Document, qa_questions: int) -> list[TaskPrompt]:
    # Items do not depend on the context, so the plan can be made before any model loads.
    return task.prompts(doc, "")[:qa_questions]


def _trial_id(
    device: str, spec: ModelSpec, task: str, doc: str, item: str, length: int, rep: int, warm: bool
) -> str:
    run = f"w{rep}" if warm else f"r{rep}"
    return f"{device}/{spec.name}/{spec.quant}/{task}/{doc}/{item}/L{length}/{run}"


# --- prepare ---------------------------------------------------------------------------


def prepare(scenario: Scenario, registry: Registry, device: str | None = None) -> Plan:
    """Resolve ``scenario`` against ``registry``; raise :class:`UsageError` on bad input."""
    if device is not None:
        scenario = scenario.with_device(device)
    where = str(scenario.source)
    device_type, device_name, profile = resolve_device(scenario, registry)

    tasks: dict[str, Task] = {}
    for kind in scenario.task_kinds:
        if kind not in registry.tasks:
            known = ", ".join(sorted(registry.tasks)) or "none"
            raise ScenarioError(
                f"{where}: [tasks] kinds: unknown task {kind!r}. Registered tasks: {known}."
                f"{registry.broken_note()}"
            )
        tasks[kind] = registry.tasks[kind][1]

    models = [
        _resolve_model(m, scenario, registry, device_type.engine_kind) for m in scenario.models
    ]
    documents = _documents(scenario, registry)
    factories = {name: f for name, (_, f) in registry.collectors.items()}
    chosen = _metrics(scenario, registry, tasks, documents)
    return Plan(
        scenario, device_type, device_name, profile, models, tasks, documents, factories, chosen
    )


def _metrics(
    scenario: Scenario, registry: Registry, tasks: Mapping[str, Task], documents: list[Document]
) -> dict[str, dict[str, Any]]:
    """Check ``[quality]`` against the registered metrics and the corpus's references."""
    where = f"{scenario.source}: [quality]"
    needing: list[str] = []
    for name in scenario.quality_metrics:
        if name not in registry.metrics:
            known = ", ".join(sorted(registry.metrics)) or "none"
            raise ScenarioError(
                f"{where} metrics: unknown metric {name!r}. Registered metrics: {known}."
                f"{registry.broken_note()}"
            )
        cls = registry.metrics[name][1]
        raw = scenario.quality_options.get(name, {})
        options = parse_options(cls.Options, raw, f"{scenario.source}: [quality.options.{name}]")
        try:
            cls.check(options)
        except UsageError as exc:
            raise type(exc)(f"{scenario.source}: {exc}") from None
        for model in cls.models(options):
            try:
                registry.model(model)
            except UsageError as exc:
                raise ScenarioError(f"{scenario.source}: [quality.options.{name}]: {exc}") from None
        if cls.needs_references:
            needing.append(name)
    if needing:
        for kind, task in tasks.items():
            lacking = [
                d.id
                for d in documents
                if any(not p.references for p in _items(task, d, scenario.qa_questions))
            ]
            if lacking:
                field_name = f"'{task.reference_field}'" if task.reference_field else "references"
                raise CorpusError(
                    f"{where} metrics {', '.join(needing)} compare answers with references, but "
                    f"task {kind} has none for documents {', '.join(lacking)} in "
                    f"{scenario.documents}. Add {field_name} to those documents in the corpus, "
                    f"or drop {kind} from [tasks] kinds or those metrics from [quality] metrics."
                )
    return {name: dict(scenario.quality_options.get(name, {})) for name in scenario.quality_metrics}


def resolve_device(
    scenario: Scenario, registry: Registry
) -> tuple[DeviceType, str, dict[str, Any]]:
    """Find the device a scenario (or ``--device``) names: a profile file, or a plugin's name."""
    value = scenario.device
    where = f"{scenario.source}: [device] name"
    profile_path = _find_profile(value, scenario.source.parent)
    profile: dict[str, Any] = {}
    kind: str | None = None
    if profile_path is not None:
        try:
            data = tomllib.loads(profile_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"device profile {profile_path}: cannot be read ({exc}).") from None
        profile = data.get("device", {})
        kind = profile.get("kind")
        if not isinstance(kind, str):
            raise ScenarioError(
                f"device profile {profile_path}: [device] kind is missing; set it to one of "
                f"{', '.join(sorted(registry.devices)) or 'the registered kinds'}."
            )
        name = str(profile.get("name", value))
        if kind not in registry.devices:
            raise ScenarioError(
                f"device profile {profile_path} needs the device kind {kind!r}, which no loaded "
                f"plugin provides (loaded kinds: {', '.join(sorted(registry.devices)) or 'none'})."
                f" Install or enable the plugin for {kind!r} devices.{registry.broken_note()}"
            )
        dt = registry.devices[kind][1]
    else:
        # The kind named like the device first ("host"), and stop at the first that accepts:
        # another kind's accepts may be costly (Android's asks the adb server, starting one).
        ordered = sorted((dt for _, dt in registry.devices.values()), key=lambda t: t.kind != value)
        found = next((dt for dt in ordered if dt.accepts(value)), None)
        if found is None:
            known = ", ".join(sorted(registry.devices)) or "none"
            raise ScenarioError(
                f"{where}: no device called {value!r}. Give a device profile path "
                f"(devices/host.toml), a profile name found in devices/, or a name a device "
                f"plugin knows (loaded kinds: {known}); `devicelab devices` lists the devices "
                f"available now.{registry.broken_note()}"
            )
        dt, name = found, value
    merged = dict(profile)
    merged.setdefault("options", {})
    merged["options"] = {**merged["options"], **scenario.device_options}
    dt.check(name, merged)
    return dt, name, merged


def _find_profile(value: str, scenario_dir: Path) -> Path | None:
    if value.endswith(".toml") or os.sep in value:
        for base in (Path.cwd(), scenario_dir):
            candidate = (base / value).resolve()
            if candidate.is_file():
                return candidate
        raise ScenarioError(f"device profile {value} does not exist. Check the path.")
    for base in (scenario_dir.parent / "devices", Path.cwd() / "devices"):
        candidate = base / f"{value}.toml"
        if candidate.is_file():
            return candidate
    return None


def _resolve_model(
    m: Any, scenario: Scenario, registry: Registry, device_kind: str
) -> ResolvedModel:
    where = f"{scenario.source}: [[models]] {m.name!r}"
    if m.path is not None:
        spec = ModelSpec(m.name, m.engine, m.quant or "unknown", Path(m.path))
    elif m.name in registry.models:
        spec = registry.models[m.name][1]
        if m.engine and m.engine != spec.engine:
            raise ScenarioError(
                f"{where}: engine {m.engine!r} does not match the registered model, which runs "
                f"on {spec.engine!r}. Remove engine or set it to {spec.engine!r}."
            )
        if m.quant and m.quant != spec.quant:
            # A quantisation the model does not ship: made once by a quantiser plugin and
            # cached (or a ScenarioError listing what can be made).
            from .quantize import resolve_quant

            spec = resolve_quant(spec, m.quant, registry, where)
    elif m.engine:
        # A model the engine carries itself (an app with its model built in): the engine's
        # check_model decides whether it knows the name.
        spec = ModelSpec(m.name, m.engine, m.quant or "unknown", None)
    else:
        known = ", ".join(sorted(registry.models)) or "none"
        raise ScenarioError(
            f"{where}: unknown model. Registered models: {known}. Or give path = "
            f'"file.gguf" with engine = "llama.cpp".{registry.broken_note()}'
        )
    engine_cls = registry.engine_for(spec.engine, device_kind)
    options = parse_options(engine_cls.Options, m.options, f"{where}: [models.options]")
    engine_cls.check_model(spec)
    return ResolvedModel(spec, engine_cls, options)


def _documents(scenario: Scenario, registry: Registry) -> list[Document]:
    where = f"{scenario.source}: [tasks] documents"
    ref = scenario.documents
    if ref in registry.corpora:
        path = registry.corpora[ref][1].path
    elif ref.endswith(".jsonl"):
        path = Path(ref)
    else:
        known = ", ".join(sorted(registry.corpora)) or "none"
        raise ScenarioError(
            f"{where}: {ref!r} is neither a registered corpus ({known}) nor a .jsonl path."
        )
    docs = load_corpus(path)
    if scenario.doc_ids:
        by_id = {d.id: d for d in docs}
        missing = [i for i in scenario.doc_ids if i not in by_id]
        if missing:
            raise ScenarioError(
                f"{scenario.source}: [tasks] doc_ids: {', '.join(missing)} not in {path} "
                f"(its ids: {', '.join(by_id)})."
            )
        docs = [by_id[i] for i in scenario.doc_ids]
    if scenario.max_documents is not None:
        docs = docs[: scenario.max_documents]
    if "QA" in scenario.task_kinds:
        no_qa = [d.id for d in docs if not d.qa]
        if no_qa:
            raise CorpusError(
                f"{path}: documents {', '.join(no_qa)} have no 'qa' pairs, which the QA task "
                "needs. Add qa pairs, or drop QA from [tasks] kinds."
            )
    return docs


# --- execute ---------------------------------------------------------------------------


class Reporter:
    """Progress callbacks. The CLI shows a progress bar; the default does nothing."""

    def start(self, total: int, skipped: int) -> None: ...

    def status(self, text: str) -> None: ...

    def trial_done(self, record: Mapping[str, Any]) -> None: ...

    def finish(self) -> None: ...


@dataclass
class RunOutcome:
    records: list[dict[str, Any]]
    skipped: int
    failed: int


class SampleSink(Protocol):
    """Where telemetry samples go: the run directory, or a list an actor sends back."""

    def append_samples(self, samples: list[dict[str, Any]]) -> None: ...


class _Pending(list[dict[str, Any]]):
    def append_samples(self, samples: list[dict[str, Any]]) -> None:
        self.extend(samples)


@dataclass
class TrialOutput:
    """One finished trial: its record, the telemetry samples taken for it (load, cooldown,
    attempts) and whether the device was lost for good while it ran."""

    record: dict[str, Any]
    samples: list[dict[str, Any]]
    device_lost: bool = False


class DeviceSession:
    """One device opened for a run: its sampler, one loaded model at a time, and the one way
    a trial runs. The local executor and remote workers (a Ray actor per phone) both use it.

    It writes nothing: each :meth:`run_trial` returns the record and samples, so the driver
    stays the only writer of the run directory. A model loads when the first trial that
    needs it arrives and stays loaded while the trials that follow use it.
    """

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        reporter: Reporter | None = None,
        device_label: str | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.reporter = reporter or Reporter()
        self.device_label = device_label or plan.device_name
        self.device: Device | None = None
        self.info: dict[str, Any] = {}
        self.sampler: Sampler | None = None
        self.thermal = Thermal()
        self._model: ResolvedModel | None = None
        self._engine: Engine | None = None
        self._load_error: str | None = None
        self._load_s = 0.0
        self._contexts: dict[tuple[str, str, str, int], TaskPrompt] = {}
        self._pending = _Pending()
        # The [quality] metrics' own process, from open() to close().
        self.scorer: Scorer | None = None

    def open(self) -> None:
        """Open the device and start its sampler; call :meth:`close` after, also on errors."""
        plan, sc = self.plan, self.plan.scenario
        if plan.metrics:
            # First: a metric that cannot load stops the run before any device or trial.
            self.reporter.status(f"starting the scoring process ({', '.join(plan.metrics)})")
            self.scorer = Scorer(plan.metrics, sc.source)
            self.scorer.start()
        self.device = device = plan.device_type.open(plan.device_name, plan.device_profile)
        self.reporter.status(f"opening device {plan.device_name}")
        device.open()
        self.info = device.info()
        collectors = device.collectors()
        for factory in plan.collector_factories.values():
            extra = factory(device)
            if extra is not None:
                collectors.append(extra)
        self.sampler = Sampler(collectors, sc.telemetry_interval_s)
        if sc.telemetry_enabled:
            self.sampler.start()
        elif sc.cooldown_below_c is not None:
            self.sampler.start(poll=False)  # the cooldown still reads the temperature

    def take_samples(self) -> list[dict[str, Any]]:
        """The samples taken since the last call (a failed load's included)."""
        out = list(self._pending)
        self._pending.clear()
        return out

    def run_trial(self, trial: Trial) -> TrialOutput:
        """Run ``trial`` (loading its model first if another one is loaded)."""
        assert self.device is not None and self.sampler is not None, "open() first"
        sc = self.plan.scenario
        if self._model is not trial.model:
            self._load(trial.model)
        base = _base_record(self.run_id, trial, self.plan, self.info, trial.model, self._load_s)
        base["device"] = self.device_label
        self._load_s = 0.0
        lost = False
        if self._load_error is not None:
            record = {**base, **_empty_measures(), "status": "failed", "error": self._load_error}
            record["started_at"] = record["finished_at"] = now_iso()
        else:
            key = (trial.task, trial.doc_id, trial.item, trial.context_tokens)
            prompt = self._contexts[key]
            cooldown = _cooldown(
                trial, sc, self.sampler, self._pending, self.reporter, self.thermal
            )
            engine = self._engine
            assert engine is not None
            measures = _run_trial(
                trial, engine, prompt, sc, self.sampler, self._pending, self.device, self.thermal
            )
            lost = bool(measures.pop("_device_lost", False))
            record = {**base, **measures, **cooldown}
            _score(record, self.plan.tasks[trial.task], prompt, self.scorer)
        return TrialOutput(record, self.take_samples(), lost)

    def _load(self, model: ResolvedModel) -> None:
        self._close_engine()
        sc, sampler = self.plan.scenario, self.sampler
        assert self.device is not None and sampler is not None
        self._model = model
        self._engine = engine = model.engine_cls(self.device, model.spec, model.options)
        name = self.plan.device_name
        self.reporter.status(f"loading {model.spec.name} ({model.spec.quant}) on {name}")
        sampler.begin(f"load/{name}/{model.spec.name}/{model.spec.quant}", "load")
        t0 = time.perf_counter()
        self._load_error = None
        try:
            engine.load()
        except UsageError:
            raise
        except Exception as exc:
            self._load_error = f"model failed to load: {_describe(exc)}"
        self._load_s = time.perf_counter() - t0
        load_samples = sampler.end()
        if sc.telemetry_enabled:
            self._pending.append_samples(load_samples)
        self._contexts = _contexts(self.plan, engine) if self._load_error is None else {}

    def _close_engine(self) -> None:
        engine, self._engine, self._model = self._engine, None, None
        if engine is not None:
            engine.close()

    def close(self) -> None:
        """Free the model, stop the sampler, close and release the device."""
        try:
            self._close_engine()
        finally:
            scorer, self.scorer = self.scorer, None
            if scorer is not None:
                scorer.close()
            if self.sampler is not None:
                self.sampler.stop()
            device, self.device = self.device, None
            if device is not None:
                try:
                    device.close()
                finally:
                    self.plan.device_type.release(device)


def failed_record(
    run_id: str, trial: Trial, plan: Plan, error: str, lost_attempts: list[str], device: str
) -> dict[str, Any]:
    """The record of a trial that no device could run (an executor gave up on it)."""
    record = {**_base_record(run_id, trial, plan, {}, trial.model, 0.0), **_empty_measures()}
    record.update(
        device=device,
        status="failed",
        error=error,
        attempts=len(lost_attempts),
        lost_attempts=lost_attempts,
    )
    record["started_at"] = record["finished_at"] = now_iso()
    return record


def execute(plan: Plan, run: RunDir, reporter: Reporter | None = None) -> RunOutcome:
    """Run every trial not yet in ``run`` on this host, one device, in plan order. Records are
    appended as each trial finishes. This is the local executor's work."""
    rep = reporter or Reporter()
    done = run.done_trial_ids()
    trials = list(plan.trials())
    todo = [t for t in trials if t.trial_id not in done]
    rep.start(len(todo), len(trials) - len(todo))
    outcome = RunOutcome([], skipped=len(trials) - len(todo), failed=0)
    if not todo:
        rep.finish()
        return outcome

    session = DeviceSession(plan, run.run_id, rep)
    try:
        session.open()
        for trial in todo:
            try:
                result = session.run_trial(trial)
            finally:
                # A load that stops the run (a context too small) still leaves its samples.
                run.append_samples(session.take_samples())
            run.append_samples(result.samples)
            run.append_trial(result.record)
            outcome.records.append(result.record)
            outcome.failed += result.record["status"] != "ok"
            rep.trial_done(result.record)
    finally:
        try:
            session.close()
        finally:
            rep.finish()
    return outcome


def _contexts(plan: Plan, engine: Engine) -> dict[tuple[str, str, str, int], TaskPrompt]:
    """Each (task, document, item, length) prompt, built from the model's own tokens."""
    sc = plan.scenario
    window = engine.context_window()
    prompts: dict[tuple[str, str, str, int], TaskPrompt] = {}
    for doc in plan.documents:
        sections: Sections = cut_sections(
            doc.id, engine.tokenize(doc.text), sc.sections, sc.section_size
        )
        for length in sc.lengths:
            context = engine.detokenize(sections.context_tokens(length))
            for kind in sc.task_kinds:
                for prompt in plan.tasks[kind].prompts(doc, context)[: sc.qa_questions]:
                    prompts[(kind, doc.id, prompt.item, length)] = prompt
    # The longest prompt decides whether the scenario fits the model's context window.
    worst = max(prompts.values(), key=lambda p: sum(len(m.content) for m in p.messages))
    need = engine.prompt_tokens(worst.messages) + sc.max_output_tokens
    if need > window:
        raise ModelError(
            f"{sc.source}: the longest prompt needs {need} tokens ({need - sc.max_output_tokens} "
            f"prompt + {sc.max_output_tokens} output) but {engine.model.name} has a context of "
            f"{window}. Lower [context] lengths or [tasks] max_output_tokens, or raise the "
            "engine's context size in [models.options] (for llama.cpp: n_ctx)."
        )
    return prompts


def _base_record(
    run_id: str, trial: Trial, plan: Plan, info: dict[str, Any], model: ResolvedModel, load_s: float
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "trial_id": trial.trial_id,
        "status": "ok",
        "error": None,
        "device": plan.device_name,
        "device_info": info,
        "engine": model.spec.engine,
        "model": model.spec.name,
        "quant": model.spec.quant,
        "task": trial.task,
        "doc_id": trial.doc_id,
        "item": trial.item,
        "context_tokens": trial.context_tokens,
        "sections": trial.sections,
        "repetition": trial.repetition,
        "warmup": trial.warmup,
        # load_s is the model's load time, carried by the first trial after each load.
        "load_s": round(load_s, 4),
    }


def _score(
    record: dict[str, Any], task: Task, prompt: TaskPrompt, scorer: Scorer | None = None
) -> None:
    """Put the task's own metrics in an ok record's ``quality``; a metric that fails or gives
    something other than numbers fails the trial, with the task named.

    Then the scenario's ``[quality]`` metrics (``scorer``) score the task's reading of the
    output: their values join ``quality``; one that raises leaves the trial ok (its speed
    was measured) and is named with its reason in ``quality_errors``.
    """
    if record["status"] != "ok":
        return
    output = record["output_text"] or ""
    try:
        scores = task.score(prompt, output)
        record["quality"] = {str(k): float(v) for k, v in scores.items()}
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = (
            f"the quality metric of task {task.kind!r} failed: {_describe(exc)}. "
            "Task.score must return a dict of metric name -> number."
        )
        return
    if scorer is None:
        return
    try:
        response = task.response(prompt, output)
    except Exception as exc:
        reason = f"task {task.kind!r} could not read the output: {_describe(exc)}"
        record["quality_errors"] = {name: reason for name in scorer.metrics}
        return
    item = Scored(
        task=task.kind,
        candidates=tuple(response.items),
        references=tuple(prompt.references),
        source=prompt.fields.get("document", ""),
        request=prompt.fields.get("request", ""),
    )
    scoring = scorer.score(item)
    record["quality"].update(scoring.values)
    if scoring.errors:
        record["quality_errors"] = scoring.errors


def _empty_measures() -> dict[str, Any]:
    return {
        "input_tokens": None,
        "output_tokens": None,
        "ttft_s": None,
        "itps": None,
        "otps": None,
        "runtime_s": None,
        "peak_mem_mb": None,
        "max_temp_c": None,
        "energy_j": None,
        "energy_reliable": None,
        "output_text": None,
        "quality": {},
        "engine_timings": {},
        "attempts": 1,
        "lost_attempts": [],
        "cooldown_s": 0.0,
        "cooldown_timed_out": False,
        "throttled": None,
        "thermal_status_max": None,
    }


def _run_trial(
    trial: Trial,
    engine: Engine,
    prompt: TaskPrompt,
    sc: Scenario,
    sampler: Sampler,
    run: SampleSink,
    device: Device,
    thermal: Thermal,
) -> dict[str, Any]:
    """Run one trial; when the device is lost, reconnect and retry (``[scenario] retries``).

    Only the last attempt becomes the record, so a trial is written once however often it
    was tried; ``attempts`` says how many it took and ``error`` keeps the earlier reasons.
    """
    lost: list[str] = []
    for attempt in range(1, sc.retries + 2):
        measures, lost_reason = _attempt(trial, engine, prompt, sc, sampler, run, attempt, thermal)
        if lost_reason is None:
            break
        lost.append(f"attempt {attempt}: {lost_reason}")
        if attempt > sc.retries:
            break
        try:
            device.reconnect(sc.reconnect_timeout_s)
        except DeviceLostError as exc:
            lost.append(f"reconnect failed: {exc}")
            break
    measures["attempts"] = attempt
    measures["lost_attempts"] = lost
    # Lost for good (no retry or reconnect left): a pool of devices moves the trial elsewhere.
    measures["_device_lost"] = lost_reason is not None
    if lost and measures["status"] == "failed":
        final = [] if lost_reason is not None else [f"attempt {attempt}: {measures['error']}"]
        measures["error"] = "; ".join(lost + final)
    return measures


def _attempt(
    trial: Trial,
    engine: Engine,
    prompt: TaskPrompt,
    sc: Scenario,
    sampler: Sampler,
    run: SampleSink,
    attempt: int,
    thermal: Thermal,
) -> tuple[dict[str, Any], str | None]:
    request = GenerationRequest(
        messages=prompt.messages,
        max_tokens=sc.max_output_tokens,
        temperature=sc.temperature,
        seed=sc.seed,
        fields=prompt.fields,
    )
    stream = TokenStream(deadline=time.perf_counter() + sc.timeout_s)
    started_at = now_iso()
    sampler.begin(trial.trial_id, "idle", stream)
    result: GenerationResult | None = None
    error: str | None = None
    lost: str | None = None
    try:
        result = engine.generate(request, stream)
    except DeviceLostError as exc:
        error = lost = str(exc)
    except TrialError as exc:
        error = str(exc)
    except DevicelabError:
        raise
    except Exception as exc:  # an engine bug fails the trial, not the run
        error = _describe(exc)
    finally:
        stream.done()
        samples = sampler.end()
    if sc.telemetry_enabled:
        if attempt > 1:
            for sample in samples:
                sample["attempt"] = attempt
        run.append_samples(samples)
    measures = _empty_measures()
    measures["started_at"] = started_at
    measures["finished_at"] = now_iso()
    measures.update(_from_samples(samples))
    measures.update(thermal.throttling(samples))
    if result is not None and stream.t_sent is not None:
        speed = metrics.speed(
            stream.t_sent, stream.token_times, result.input_tokens, result.output_tokens
        )
        measures.update(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            ttft_s=speed.ttft_s,
            itps=speed.itps,
            otps=speed.otps,
            runtime_s=speed.runtime_s,
            output_text=result.text,
            engine_timings=result.engine_timings,
        )
        if result.output_tokens == 0:
            error = "the engine produced no output tokens"
    measures["status"] = "ok" if error is None else "failed"
    measures["error"] = error
    return measures, lost


def _from_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Trial fields derived from telemetry: peak memory, hottest sensor, energy."""
    mems = [s["mem_mb"] for s in samples if s.get("mem_mb") is not None]
    temps = [s["temp_c"] for s in samples if s.get("temp_c") is not None]
    power = [(s["t"], s["power_w"]) for s in samples if s.get("power_w") is not None]
    energy = None
    if len(power) >= 2:
        # Trapezoids between samples: the sampler's clock is not perfectly regular.
        energy = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(power))
    on_battery = [s["on_battery"] for s in samples if s.get("on_battery") is not None]
    return {
        "peak_mem_mb": round(max(mems), 1) if mems else None,
        "max_temp_c": max(temps) if temps else None,
        "energy_j": None if energy is None else round(energy, 3),
        "energy_reliable": (all(on_battery) if on_battery else False)
        if energy is not None
        else None,
    }


THROTTLED_STATUS = 2  # Android's THERMAL_STATUS_MODERATE


def _is_cap_key(key: str) -> bool:
    return key.startswith("cpu_") and key.endswith("_max_mhz")


class Thermal:
    """Run-wide thermal state: the highest ``cpu_*_max_mhz`` of each key seen so far (a lower
    value later is a thermal cap) and whether the missing temperature was reported."""

    def __init__(self) -> None:
        self.max_mhz: dict[str, float] = {}
        self.noted_no_temp = False

    def observe(self, samples: list[dict[str, Any]]) -> None:
        for s in samples:
            for key, value in s.items():
                if _is_cap_key(key) and isinstance(value, (int, float)):
                    self.max_mhz[key] = max(value, self.max_mhz.get(key, value))

    def throttling(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """``throttled`` and ``thermal_status_max`` of one trial's samples (in time order)."""
        statuses = [
            int(s["thermal_status"])
            for s in samples
            if isinstance(s.get("thermal_status"), (int, float))
            and not isinstance(s.get("thermal_status"), bool)
        ]
        capped = False
        seen_cap = False
        for s in samples:
            for key, value in s.items():
                if not _is_cap_key(key) or not isinstance(value, (int, float)):
                    continue
                seen_cap = True
                top = self.max_mhz.get(key)
                if top is not None and value < top:
                    capped = True
                self.max_mhz[key] = value if top is None else max(top, value)
        status_max = max(statuses) if statuses else None
        throttled: bool | None = None
        if statuses or seen_cap:
            throttled = capped or (status_max is not None and status_max >= THROTTLED_STATUS)
        return {"throttled": throttled, "thermal_status_max": status_max}


def _cooldown(
    trial: Trial, sc: Scenario, sampler: Sampler, run: SampleSink, rep: Reporter, thermal: Thermal
) -> dict[str, Any]:
    """Wait, before a trial, until the hottest sensor is below ``[thermal] cooldown_below_c``
    (at most ``cooldown_timeout_s``). The wait's samples carry the trial's id and phase
    "cooldown"; a device without a temperature is not waited for."""
    out: dict[str, Any] = {"cooldown_s": 0.0, "cooldown_timed_out": False}
    limit = sc.cooldown_below_c
    if limit is None:
        return out
    temp = sampler.read_now().get("temp_c")
    if temp is None:
        if not thermal.noted_no_temp:
            thermal.noted_no_temp = True
            rep.status("no temperature on this device: trials start without a cooldown")
        return out
    if temp < limit:
        return out
    rep.status(f"cooling down: {temp:g} °C, waiting for < {limit:g} °C before {trial.trial_id}")
    t0 = time.perf_counter()
    sampler.begin(trial.trial_id, "cooldown")
    try:
        while temp is not None and temp >= limit:
            if time.perf_counter() - t0 >= sc.cooldown_timeout_s:
                out["cooldown_timed_out"] = True
                break
            time.sleep(sc.cooldown_poll_s)
            temp = sampler.read_now().get("temp_c")
    finally:
        samples = sampler.end()
    thermal.observe(samples)
    if sc.telemetry_enabled:
        run.append_samples(samples)
    out["cooldown_s"] = round(time.perf_counter() - t0, 4)
    return out


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def prepare_resolved(data: Mapping[str, Any], source: str, registry: Registry) -> Plan:
    """The plan of a scenario sent as :meth:`Scenario.resolved` (a remote worker makes its own
    plan from its own plugins, so nothing but data crosses the network)."""
    return prepare(parse_scenario(dict(data), Path(source)), registry)


def load_and_prepare(path: str | Path, registry: Registry, device: str | None = None) -> Plan:
    return prepare(load_scenario(path), registry, device)
