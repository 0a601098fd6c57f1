"""The plan: a scenario resolved against the plugins, and its trial matrix. Data only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .._api import Collector, Device, DeviceType, Document, Engine, ModelSpec, Task, TaskPrompt
from .._record import Attempts, Identity, TrialRecord
from .._rundir import now_iso
from .._scenario import Scenario


@dataclass(frozen=True)
class QuantJob:
    """A quantisation the plan needs that is not made yet (see :mod:`.materialise`)."""

    source: ModelSpec  # the registered model as it ships
    backend: str  # the quantiser plugin's backend name
    qtype: str  # its canonical spelling of the quantisation
    out: Path  # where the file goes (the user's cache)
    asked: str  # the quantisation as the scenario spells it


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    engine_cls: type[Engine]
    options: Any
    # Set when spec.path does not exist yet: the quantisation that makes it.
    make: QuantJob | None = None
    # The engine options that tell this entry apart from others of the same model, quant and
    # engine (swept or differing), as ``threads=1,n_batch=256``; "" when none do.
    variant: str = ""
    # Whether trial ids name the engine: only when another entry runs the same model and
    # quant on another engine, so the ids of runs without one stay as they were.
    engine_in_id: bool = False
    # The options its [[models]] entry sweeps (given as lists), all named in the variant, and
    # those it writes at all (an option left to its default is named "default": a default
    # such as llama.cpp's threads depends on the host, and ids must not).
    swept: tuple[str, ...] = ()
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One prompt at one context length: what a trial repeats."""

    task: str
    doc_id: str
    item: str
    context_tokens: int
    sections: int


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

        With ``repetitions = "auto"`` these are all the trials that may run (each cell
        ``max_repetitions`` times); a :class:`~devicelab.Schedule` picks the ones that do.
        """
        sc = self.scenario
        cells = self.cells
        for model in self.models:
            yield from self.warmups(model)
            reps = range(sc.most_repetitions)
            if sc.order == "interleaved":
                runs = [(cell, rep) for rep in reps for cell in cells]
            else:
                runs = [(cell, rep) for cell in cells for rep in reps]
            for cell, rep in runs:
                yield self.trial(model, cell, rep)

    @cached_property
    def cells(self) -> list[Cell]:
        """What one model's measured trials vary over, in run order; each is repeated."""
        sc = self.scenario
        return [
            Cell(kind, doc.id, prompt.item, length, length // sc.section_size)
            for kind in sc.task_kinds
            for doc in self.documents
            for prompt in prompt_items(self.tasks[kind], doc, sc.qa_questions)
            for length in sc.lengths
        ]

    def warmups(self, model: ResolvedModel) -> list[Trial]:
        """``model``'s warm-up trials, on the first cell."""
        return [self.trial(model, self.cells[0], rep, True) for rep in range(self.scenario.warmup)]

    def starts_segment(self, trial: Trial) -> bool:
        """Whether ``trial`` may wait for a cooldown: every trial, but with ``[sustained]``
        only warm-ups and the first trial of each summary row's segment (its first document
        and item at repetition 0), since a segment runs back to back."""
        if not self.scenario.sustained or trial.warmup:
            return True
        first = next(
            c
            for c in self.cells
            if (c.task, c.context_tokens) == (trial.task, trial.context_tokens)
        )
        return trial.repetition == 0 and (first.doc_id, first.item) == (trial.doc_id, trial.item)

    def trial(self, model: ResolvedModel, cell: Cell, rep: int, warmup: bool = False) -> Trial:
        """Repetition ``rep`` of ``cell`` on ``model`` (or warm-up ``rep``)."""
        return Trial(
            trial_id=trial_id(
                self.device_name,
                model,
                cell.task,
                cell.doc_id,
                cell.item,
                cell.context_tokens,
                rep,
                warmup,
            ),
            model=model,
            task=cell.task,
            doc_id=cell.doc_id,
            item=cell.item,
            context_tokens=cell.context_tokens,
            sections=cell.sections,
            repetition=rep,
            warmup=warmup,
        )

    def identity(
        self,
        trial: Trial,
        run_id: str,
        device: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> Identity:
        """Who and what ``trial`` is, as its record says it."""
        spec = trial.model.spec
        return Identity(
            run_id=run_id,
            trial_id=trial.trial_id,
            device=self.device_name if device is None else device,
            engine=spec.engine,
            model=spec.name,
            quant=spec.quant,
            task=trial.task,
            doc_id=trial.doc_id,
            item=trial.item,
            context_tokens=trial.context_tokens,
            sections=trial.sections,
            repetition=trial.repetition,
            warmup=trial.warmup,
            device_info=info or {},
            variant=trial.model.variant,
        )

    def failed_record(
        self, trial: Trial, run_id: str, error: str, lost_attempts: list[str], device: str
    ) -> TrialRecord:
        """The record of a trial that no device could run (an executor gave up on it)."""
        at = now_iso()
        return TrialRecord(
            self.identity(trial, run_id, device),
            status="failed",
            error=error,
            started_at=at,
            finished_at=at,
            tries=Attempts(len(lost_attempts), tuple(lost_attempts)),
        )


def prompt_items(task: Task, doc: Document, qa_questions: int) -> list[TaskPrompt]:
    # Items do not depend on the context, so the plan can be made before any model loads.
    return task.prompts(doc, "")[:qa_questions]


def trial_id(
    device: str,
    model: ResolvedModel,
    task: str,
    doc: str,
    item: str,
    length: int,
    rep: int,
    warm: bool,
) -> str:
    """``device/model/quant[/engine][/variant]/task/doc/item/L200/r0``: the engine and the
    variant only where they are needed, so a scenario without either keeps the ids it always
    had (and ``--resume`` of its old run directories works)."""
    spec = model.spec
    run = f"w{rep}" if warm else f"r{rep}"
    which = [spec.name, spec.quant]
    if model.engine_in_id:
        which.append(spec.engine)
    if model.variant:
        which.append(model.variant)
    return f"{device}/{'/'.join(which)}/{task}/{doc}/{item}/L{length}/{run}"
