"""Resolve a scenario against the loaded plugins: device, models, tasks, documents, metrics.

Everything here only reads and checks, so bad input is reported before anything is made or
written; :mod:`.materialise` makes what the plan needs afterwards.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._api import DeviceType, Document, ModelSpec, Task, is_gguf
from .._catalogue import cached_info, needs_ensure
from .._corpus import load_corpus
from .._errors import (
    CorpusError,
    MissingDependencyError,
    ModelError,
    ScenarioError,
    UsageError,
)
from .._options import parse_options
from .._quantize import plan_quant
from .._registry import Registry, closest
from .._scenario import Scenario, load_scenario, parse_scenario
from .._toml import TOMLDecodeError, read_toml
from .plan import Plan, QuantJob, ResolvedModel, prompt_items
from .schedule import check_adaptive


def resolve(scenario: Scenario, registry: Registry, device: str | None = None) -> Plan:
    """Resolve ``scenario`` against ``registry``; raise :class:`UsageError` on bad input.

    Pure: it reads the scenario's inputs (corpus, device profile) but makes nothing; a quant
    the plan needs and that is not made yet is a :class:`QuantJob` for :func:`materialise`."""
    if device is not None:
        scenario = scenario.with_device(device)
    where = str(scenario.source)
    device_type, device_name, profile = resolve_device(scenario, registry)

    tasks: dict[str, Task] = {}
    for kind in scenario.task_kinds:
        if kind not in registry.tasks:
            why = registry.unknown("task", kind, registry.tasks)
            raise ScenarioError(f"{where}: [tasks] kinds: {why}")
        tasks[kind] = registry.tasks[kind][1]

    models = name_variants(
        [
            model
            for m in scenario.models
            for model in _resolve_model(m, scenario, registry, device_type.engine_kind)
        ],
        str(scenario.source),
    )
    for model in models:
        if model.make is None and not needs_ensure(model.spec):
            check_context(model.spec, scenario)
    documents = _documents(scenario, registry)
    factories = {name: f for name, (_, f) in registry.collectors.items()}
    chosen = _metrics(scenario, registry, tasks, documents)
    plan = Plan(
        scenario, device_type, device_name, profile, models, tasks, documents, factories, chosen
    )
    check_adaptive(plan)
    return plan


def _metrics(
    scenario: Scenario, registry: Registry, tasks: Mapping[str, Task], documents: list[Document]
) -> dict[str, dict[str, Any]]:
    """Check ``[quality]`` against the registered metrics and the corpus's references."""
    where = f"{scenario.source}: [quality]"
    needing: list[str] = []
    for name in scenario.quality_metrics:
        if name not in registry.metrics:
            why = registry.unknown("metric", name, registry.metrics)
            raise ScenarioError(f"{where} metrics: {why}")
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
                if any(not p.references for p in prompt_items(task, d, scenario.qa_questions))
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
            data = read_toml(profile_path)
        except (OSError, TOMLDecodeError) as exc:
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
) -> list[ResolvedModel]:
    """The entry ``m`` resolved: one model per value of its option sweep (one if none)."""
    make: QuantJob | None = None
    where = f"{scenario.source}: [[models]] {m.name!r}"
    if m.path is not None:
        spec = ModelSpec(m.name, m.engine, m.quant or "unknown", Path(m.path))
    elif m.name in registry.models:
        spec = registry.models[m.name][1]
        if m.engine and m.engine != spec.engine:
            combos, swept = _sweep(m.options, registry, m.engine, device_kind, where)
            return [
                dataclasses.replace(
                    _other_engine(spec, m, registry, device_kind, options, where),
                    swept=swept,
                    given=tuple(options),
                )
                for options in combos
            ]
        if m.quant and m.quant != spec.quant:
            # A quantisation the model does not ship: made once by a quantiser plugin and
            # cached (or a ScenarioError listing what can be made).
            spec, make = plan_quant(spec, m.quant, registry, where)
    elif m.engine:
        # A model the engine carries itself (an app with its model built in): the engine's
        # check_model decides whether it knows the name.
        spec = ModelSpec(m.name, m.engine, m.quant or "unknown", None)
    else:
        known = ", ".join(sorted(registry.models)) or "none"
        raise ScenarioError(
            f"{where}: unknown model. Registered models: {known}."
            f"{closest(m.name, registry.models)} Fix the name (`devicelab models` lists "
            f'them), or give path = "file.gguf" with engine = "llama.cpp".'
            f"{registry.broken_note()}"
        )
    combos, swept = _sweep(m.options, registry, spec.engine, device_kind, where)
    return [
        dataclasses.replace(
            resolve_engine(
                spec, registry, device_kind, options, f"{where}: [models.options]", make
            ),
            swept=swept,
            given=tuple(options),
        )
        for options in combos
    ]


def _other_engine(
    spec: ModelSpec,
    m: Any,
    registry: Registry,
    device_kind: str,
    options: Mapping[str, Any],
    where: str,
) -> ResolvedModel:
    """A registered model on an engine other than its own (the app that carries the same
    model, beside its engine's CLI): the same model handed to that engine, if it takes it."""
    other = dataclasses.replace(spec, engine=m.engine, quant=m.quant or spec.quant)
    try:
        return resolve_engine(other, registry, device_kind, options, f"{where}: [models.options]")
    except (ModelError, MissingDependencyError) as exc:
        raise ScenarioError(
            f"{where}: engine {m.engine!r} does not match the registered model, which runs on "
            f"{spec.engine!r}, and cannot run it ({exc}) Remove engine or set it to "
            f"{spec.engine!r}."
        ) from None


def accepts_list(options_type: type[Any], key: str) -> bool:
    """Whether option ``key`` of ``options_type`` takes a list as its value (its declared type
    is a list, tuple, set, any sequence, or Any), so a list given for it is its value and
    never a sweep."""
    try:
        hints = typing.get_type_hints(options_type)
    except Exception:  # annotations out of reach: the list is the value, as validation sees it
        return True
    return _takes_list(hints.get(key, Any))


def _takes_list(annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_takes_list(a) for a in typing.get_args(annotation))
    kind = origin or annotation
    if not isinstance(kind, type) or issubclass(kind, str | bytes):  # text is no list
        return False
    return issubclass(kind, list | tuple | set | frozenset | Sequence)


def _sweep(
    options: Mapping[str, Any], registry: Registry, engine: str, device_kind: str, where: str
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """``[models.options]`` expanded, and the options swept: a list given for an option of
    scalar type is a sweep dimension (``threads = [1, 2]``), several lists their cartesian
    product in the order written (the last key varies fastest); a list for a list-typed
    option is its value."""
    options_type = registry.engine_for(engine, device_kind).Options
    dims = {
        k: list(v)
        for k, v in options.items()
        if isinstance(v, list | tuple) and not accepts_list(options_type, k)
    }
    for k, values in dims.items():
        if not values or len(set(map(repr, values))) != len(values):
            raise ScenarioError(
                f"{where}: [models.options] {k} = {values!r}: a list sweeps the option over "
                "its values, so give one or more different values, e.g. threads = [1, 2]."
            )
    if not dims:
        return [dict(options)], ()
    combos = itertools.product(*dims.values())
    return [{**options, **dict(zip(dims, c, strict=True))} for c in combos], tuple(dims)


def _variant_value(model: ResolvedModel, key: str) -> str:
    """How the variant names option ``key`` of ``model``: its checked value where the entry
    gives it, else ``default``."""
    if key not in model.given:
        return "default"
    value = getattr(model.options, key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def name_variants(models: list[ResolvedModel], where: str) -> list[ResolvedModel]:
    """Each model with its variant and whether its trial ids name its engine.

    Entries of the same model and quant on different engines are told apart by the engine;
    of the same model, quant and engine by their variant: every option swept in any of them,
    and every option whose value differs between them, as ``key=value`` joined by commas,
    keys in the order the engine declares them; an option an entry leaves out is
    ``key=default`` (not its value: a default may depend on the host, as llama.cpp's threads
    do, and trial ids must be the same on every host). A model alone keeps an empty
    variant, unless an option of it is swept."""
    out = []
    for m in models:
        same_model = [
            o for o in models if (o.spec.name, o.spec.quant) == (m.spec.name, m.spec.quant)
        ]
        same_engine = [o for o in same_model if o.spec.engine == m.spec.engine]
        fields = dataclasses.fields(m.options) if dataclasses.is_dataclass(m.options) else ()
        keys = [
            f.name
            for f in fields
            if any(f.name in o.swept for o in same_engine)
            or len({_variant_value(o, f.name) for o in same_engine}) > 1
        ]
        variant = ",".join(f"{k}={_variant_value(m, k)}" for k in keys)
        engine_in_id = len({o.spec.engine for o in same_model}) > 1
        out.append(dataclasses.replace(m, variant=variant, engine_in_id=engine_in_id))
    seen: dict[tuple[str, str, str, str], ResolvedModel] = {}
    for m in out:
        key = (m.spec.name, m.spec.quant, m.spec.engine, m.variant)
        if key in seen:
            raise ScenarioError(
                f"{where}: [[models]] runs {m.spec.name!r} ({m.spec.quant}) on "
                f"{m.spec.engine!r} twice with the same options"
                + (f" ({m.variant})" if m.variant else "")
                + ". Remove one entry or give it different options."
            )
        seen[key] = m
    return out


def resolve_engine(
    spec: ModelSpec,
    registry: Registry,
    device_kind: str,
    options: Mapping[str, Any],
    where: str,
    make: QuantJob | None = None,
) -> ResolvedModel:
    """The engine that runs ``spec`` on ``device_kind`` devices, with its options checked."""
    engine_cls = registry.engine_for(spec.engine, device_kind)
    engine_options = parse_options(engine_cls.Options, dict(options), where)
    # A file still to be made (quantised, assembled) is checked once materialise made it.
    if make is None and not needs_ensure(spec):
        engine_cls.check_model(spec)
    return ResolvedModel(spec, engine_cls, engine_options, make)


def check_context(spec: ModelSpec, scenario: Scenario) -> None:
    """Refuse a GGUF model trained on a shorter context than the scenario's longest prompt
    (its longest L plus the output it may write): its answers there would be noise."""
    if spec.path is None or not spec.path.is_file():
        return
    if not is_gguf(spec.path):
        return  # not a llama.cpp model; its engine's check_model judged it
    trained = cached_info(spec.path).context_length
    need = max(scenario.lengths) + scenario.max_output_tokens
    if trained is not None and trained < need:
        raise ModelError(
            f"{scenario.source}: [[models]] {spec.name!r}: it was trained on a context of "
            f"{trained} tokens, but the scenario's longest prompt needs {need} (the largest "
            f"[context] length {max(scenario.lengths)} plus [tasks] max_output_tokens "
            f"{scenario.max_output_tokens}). Lower the lengths, or pick a model trained on a "
            "longer context."
        )


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


def resolve_data(data: Mapping[str, Any], source: str, registry: Registry) -> Plan:
    """The plan of a scenario sent as :meth:`Scenario.resolved` (a remote worker makes its own
    plan from its own plugins, so nothing but data crosses the network)."""
    return resolve(parse_scenario(dict(data), Path(source)), registry)


def load_and_resolve(path: str | Path, registry: Registry, device: str | None = None) -> Plan:
    return resolve(load_scenario(path), registry, device)
