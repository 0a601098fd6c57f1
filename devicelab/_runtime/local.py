"""The local executor, a built-in plugin: this host, the plan's one device, trials in order.

It is registered by module name when the plugin manager starts (as pytest and llm load their
default plugins), so the registry itself knows no runner.
"""

from __future__ import annotations

from collections.abc import Callable

from .._errors import UsageError
from .._executor import DEFAULT, Executor, Reporter, RunOutcome
from .._hookspecs import hookimpl
from .._rundir import RunDir
from .execute import execute
from .plan import Plan


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
        return execute(plan, run, reporter)


@hookimpl
def devicelab_register_executors(register: Callable[[type[Executor]], None]) -> None:
    register(LocalExecutor)
