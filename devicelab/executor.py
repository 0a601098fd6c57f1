"""Executors: who runs a prepared :class:`~devicelab.scheduler.Plan`'s trials, and where.

The local executor (the default) runs them on this host, on the one device the plan names.
Plugins add others through ``devicelab_register_executors`` (the ``ray`` plugin spreads the
trials over the phones of a Ray cluster). Whatever runs the trials, the process that calls
:meth:`Executor.run` is the only writer of the run directory, so a run directory looks the
same however it was made and ``--resume`` works across executors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from .errors import ScenarioError, UsageError

if TYPE_CHECKING:
    from .plugin_manager import Registry
    from .results import RunDir
    from .scheduler import Plan, Reporter, RunOutcome

DEFAULT = "local"


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
        """Raise :class:`~devicelab.errors.UsageError` if ``plan`` cannot run here (no device
        for it in the cluster, say); called before the run directory is created."""

    @abstractmethod
    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        """Run every trial of ``plan`` not yet recorded in ``run``; append each record (and
        its telemetry samples) to ``run`` as it finishes, skipping any trial already there."""


class LocalExecutor(Executor):
    """This host, the plan's one device, trials in plan order."""

    name = DEFAULT
    description = "this host: the scenario's device, trials in order (the default)"

    def __init__(self, address: str | None = None) -> None:
        if address is not None:
            raise UsageError(
                f"--address {address} is for executors that run on a cluster; the local "
                "executor runs on this host. Drop --address, or add --executor ray."
            )
        super().__init__(address)

    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        from .scheduler import execute

        return execute(plan, run, reporter)


def executor_class(registry: Registry, name: str, where: str = "--executor") -> type[Executor]:
    """The executor class registered as ``name``; a clear error naming the known ones."""
    found = registry.executors.get(name)
    if found is None:
        known = ", ".join(sorted(registry.executors))
        raise ScenarioError(
            f"{where}: unknown executor {name!r}. Registered executors: {known}. Install the "
            f"plugin that provides it (for ray: pip install 'devicelab[ray]') or fix the name."
            f"{registry.broken_note()}"
        )
    return found[1]
