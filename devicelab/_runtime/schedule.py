"""Which of a plan's trials run, and when: the one loop every executor drives.

An executor asks :meth:`Schedule.next` for a batch of trials, runs them (in order, or spread
over devices), hands each record back through :meth:`Schedule.add`, and asks again until the
schedule has nothing left. With a fixed number of repetitions the first batch is every trial
of the plan not yet recorded, in plan order, and the second is empty: exactly the trials and
order of :meth:`Plan.trials`. With ``repetitions = "auto"`` the batches are repetitions of
cells that have not stopped (:mod:`devicelab._stopping` decides from their records; with
``[sustained] duration_s``, :func:`timed_rule`: until the cell's trials span the duration):

- ``order = "interleaved"``: a round, the next repetition of every cell of the model that
  has not stopped, in plan order;
- ``order = "sequential"``: the next repetition of the first cell that has not stopped, so
  each cell repeats until it stops before the next begins.

Each model's warm-ups come with its first batch, and a model's cells all stop before the next
model's begin (a model loads once). A cell here is a row of the summary (model, quant, task,
L): one repetition of it is one trial per document and item.

The schedule is rebuilt from the records in the run directory, so ``--resume`` continues
where a run stopped and makes the same decisions: a cell's decision after ``k`` repetitions
depends only on its records of repetitions ``0..k-1``, whoever ran them and in what order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .._errors import ScenarioError
from .._record import RUN_KEY, TrialRecord
from .._stopping import MIN_VALUES, Rule, Stop, decide
from .._sustained import seconds
from .plan import Cell, Plan, ResolvedModel, Trial

# A stopping rule: a cell's records of its first ``k`` repetitions, and ``k`` -> stop or not.
StopRule = Callable[[Sequence[TrialRecord], int], Stop | None]


def timed_rule(duration_s: float, records: Sequence[TrialRecord], repetitions: int) -> Stop | None:
    """A sustained cell stops once its trials (of ``repetitions`` repetitions) span
    ``duration_s``, from the first one's start to the last one's end."""
    starts = [seconds(r.started_at) for r in records if r.started_at]
    ends = [seconds(r.finished_at) for r in records if r.finished_at]
    if starts and ends and max(ends) - min(starts) >= duration_s:
        return Stop(repetitions, f"duration_s {duration_s:g} s", "duration")
    return None


def rule_of(plan: Plan) -> Rule:
    sc = plan.scenario
    return Rule(sc.min_repetitions, sc.max_repetitions, sc.target_ci_pct, sc.adaptive_metrics)


@dataclass
class _Group:
    """The cells of one summary row on one model: what adaptive repetitions decide on."""

    key: tuple[Any, ...]  # the values of RUN_KEY
    model: ResolvedModel
    cells: list[tuple[int, Cell]] = field(default_factory=list)  # (position in plan order, cell)
    stop: Stop | None = None
    checked: int = 0  # decisions made up to this many repetitions


class Schedule:
    """The trials of ``plan`` still to run, given the ``records`` already in its run directory.

    ``rule`` replaces the stopping rule of adaptive repetitions (tests give one with known
    answers); by default it is :func:`devicelab._stopping.decide` with the scenario's
    settings.
    """

    def __init__(
        self, plan: Plan, records: Iterable[TrialRecord] = (), rule: StopRule | None = None
    ) -> None:
        self.plan = plan
        self.duration_s = plan.scenario.sustained_duration_s
        # Timed sustained cells, like adaptive ones, stop on what their records say.
        self.adaptive = plan.scenario.adaptive or self.duration_s is not None
        self._all = list(plan.trials())
        ids = {t.trial_id for t in self._all}
        self._records: dict[str, TrialRecord] = {
            r.trial_id: r for r in records if r.trial_id in ids
        }
        self._issued: set[str] = set()
        self.skipped = len(self._records)  # recorded before this schedule began
        self.ran = 0  # recorded since
        self._max = plan.scenario.most_repetitions
        if rule is None and self.duration_s is not None:
            rule = partial(timed_rule, self.duration_s)
        self._rule: StopRule = rule or partial(decide, rule=rule_of(plan))
        self._groups: list[list[_Group]] = [self._group(m) for m in plan.models]

    def _group(self, model: ResolvedModel) -> list[_Group]:
        groups: dict[tuple[Any, ...], _Group] = {}
        for pos, cell in enumerate(self.plan.cells):
            # Keyed as the summary keys its rows (RUN_KEY, from the record a trial makes).
            ident = self.plan.identity(self.plan.trial(model, cell, 0), "")
            key = TrialRecord(ident).cell(RUN_KEY)
            groups.setdefault(key, _Group(key, model)).cells.append((pos, cell))
        return list(groups.values())

    # --- what executors call -----------------------------------------------------------

    def next(self) -> list[Trial]:
        """The trials to run now; empty when none is left, or (adaptive) when the next
        round waits for trials handed out and not yet recorded."""
        if not self.adaptive:
            return self._issue(self._all)
        sequential = self.plan.scenario.order != "interleaved"
        for model, groups in zip(self.plan.models, self._groups, strict=True):
            warm = self.plan.warmups(model)
            open_ = [(g, rep) for g in groups if not isinstance(rep := self._state(g), Stop)]
            if sequential:
                open_ = open_[:1]
            runs: list[Trial] = []
            if open_:
                # A round: the lowest repetition a cell still needs, for each cell that needs
                # it, in plan order (so a resumed run finishes its round before the next).
                now = min(rep for _, rep in open_)
                cells = sorted(
                    (pc for g, rep in open_ if rep == now for pc in g.cells), key=lambda pc: pc[0]
                )
                runs = [self.plan.trial(model, cell, now) for _, cell in cells]
            batch = self._issue([*warm, *runs])
            if batch or open_:
                return batch
        return []

    def add(self, record: TrialRecord) -> None:
        """A trial finished (ok or failed): its record, as written to the run directory."""
        if record.trial_id not in self._records:
            self._records[record.trial_id] = record
            self.ran += 1

    def remaining(self) -> int:
        """The trials still to run at most (adaptive: as if no cell stopped from now on)."""
        if not self.adaptive:
            return sum(1 for t in self._all if t.trial_id not in self._records)
        left = 0
        for model, groups in zip(self.plan.models, self._groups, strict=True):
            left += sum(1 for t in self.plan.warmups(model) if t.trial_id not in self._records)
            for g in groups:
                if self.duration_s is not None and not isinstance(self._state(g), Stop):
                    left += self._timed_left(g, self.duration_s)
                elif not isinstance(self._state(g), Stop):
                    left += sum(
                        1
                        for rep in range(self._max)
                        for _, cell in g.cells
                        if self._id(g, cell, rep) not in self._records
                    )
        return left

    def _timed_left(self, g: _Group, duration_s: float) -> int:
        """An estimate of the trials a timed cell has left: its time left over the mean
        trial's time so far (its own trials', else the run's); 1 per cell before any."""
        mine = [
            r for r in self._records.values() if r.cell(RUN_KEY) == g.key and not r.identity.warmup
        ]
        timed = [r for r in mine or self._records.values() if r.started_at and r.finished_at]
        if not timed:
            return len(g.cells)
        each = sum(seconds(r.finished_at) - seconds(r.started_at) for r in timed) / len(timed)
        spent = 0.0
        if mine:
            spent = max(seconds(r.finished_at) for r in mine) - min(
                seconds(r.started_at) for r in mine
            )
        return max(1, math.ceil(max(0.0, duration_s - spent) / max(each, 1e-3)))

    def stops(self) -> dict[tuple[Any, ...], Stop]:
        """Why each cell stopped (RUN_KEY values -> :class:`Stop`), for the cells that did;
        none for timed sustained cells, whose time is what stopped them all."""
        if not self.adaptive or self.duration_s is not None:
            return {}
        out: dict[tuple[Any, ...], Stop] = {}
        for groups in self._groups:
            for g in groups:
                state = self._state(g)
                if isinstance(state, Stop):
                    out[g.key] = state
        return out

    # --- deciding ------------------------------------------------------------------------

    def _issue(self, trials: Iterable[Trial]) -> list[Trial]:
        fresh = [
            t for t in trials if t.trial_id not in self._records and t.trial_id not in self._issued
        ]
        self._issued.update(t.trial_id for t in fresh)
        return fresh

    def _id(self, g: _Group, cell: Cell, rep: int) -> str:
        return self.plan.trial(g.model, cell, rep).trial_id

    def _state(self, g: _Group) -> Stop | int:
        """Why the cell stopped, or the repetition it needs next (perhaps handed out)."""
        if g.stop is not None:
            return g.stop
        done = 0
        while done < self._max and all(
            self._id(g, cell, done) in self._records for _, cell in g.cells
        ):
            done += 1
        # Decided once per number of repetitions, in order: the first that stops is the
        # decision, as it was when the run made it.
        for k in range(g.checked + 1, done + 1):
            records = [self._records[self._id(g, c, rep)] for rep in range(k) for _, c in g.cells]
            stop = self._rule(records, k)
            if stop is None and k >= self._max:
                stop = Stop(k, f"max_repetitions {self._max}", "max")
            if stop is not None:
                g.stop = stop
                return stop
            g.checked = k
        return done


def check_adaptive(plan: Plan) -> None:
    """A :class:`ScenarioError` when adaptive repetitions could never stop a cell early."""
    sc = plan.scenario
    if not sc.adaptive or not plan.cells:
        return
    per_rep = min(len(g.cells) for g in Schedule(plan)._groups[0])
    if sc.max_repetitions * per_rep >= MIN_VALUES:
        return
    need = math.ceil(MIN_VALUES / per_rep)
    raise ScenarioError(
        f"{sc.source}: [scenario] max_repetitions: {sc.max_repetitions} repetitions give a "
        f"cell {sc.max_repetitions * per_rep} values ({per_rep} per repetition, one per document "
        f"and item), and the 95% interval of a median needs {MIN_VALUES}, so no cell could stop "
        f"before max_repetitions. Raise max_repetitions to {need} or more, or set "
        f"repetitions = {sc.max_repetitions}."
    )
