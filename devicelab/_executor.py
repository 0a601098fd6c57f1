"""The executor contract: who runs a resolved plan's trials, and where.

The local executor (a built-in plugin, ``devicelab._runtime.local``) runs them on this host, on
the one device the plan names. Plugins add others through ``devicelab_register_executors``
(the ``ray`` plugin spreads the trials over the phones of a Ray cluster). Whatever runs the
trials, the process that calls :meth:`Executor.run` is the only writer of the run directory,
so a run directory looks the same however it was made and ``--resume`` works across
executors.

This module sits below the runner: it knows the plan and the run directory by type only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ._record import TrialRecord
    from ._rundir import RunDir
    from ._runtime.plan import Plan

DEFAULT = "local"


class Reporter:
    """Progress callbacks. The CLI shows a progress bar; the default does nothing."""

    def start(self, total: int, skipped: int) -> None: ...

    def status(self, text: str) -> None: ...

    def trial_done(self, record: TrialRecord) -> None: ...

    def expect(self, total: int) -> None:
        """The trials of this run (those done included) now stand at ``total``: with
        adaptive repetitions the ``total`` given to :meth:`start` is the most there can be,
        and it falls as cells stop."""

    def finish(self) -> None: ...


@dataclass
class RunOutcome:
    """What an executor ran: the records it wrote, the trials already recorded, the failures."""

    records: list[TrialRecord] = field(default_factory=list)
    skipped: int = 0
    failed: int = 0

    def add(self, record: TrialRecord) -> None:
        self.records.append(record)
        self.failed += not record.ok


class Executor(ABC):
    """Runs the trials of a plan that are not yet in a run directory.

    Registered by class through ``devicelab_register_executors``; ``name`` is what
    ``--executor`` and ``[scenario] executor`` choose. ``address`` is ``--address``: where the
    executor finds its cluster (``None`` when not given; executors that need none reject it).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def check(self, plan: Plan) -> None:  # noqa: B027 - optional for subclasses
        """Raise :class:`~devicelab.UsageError` if ``plan`` cannot run here (no device for it
        in the cluster, say); called before anything is quantised or written."""

    @abstractmethod
    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        """Run every trial of ``plan`` not yet recorded in ``run``; append each record (and
        its telemetry samples) to ``run`` as it finishes, skipping any trial already there."""
