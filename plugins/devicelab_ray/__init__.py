"""Run a scenario across many hosts and phones on a Ray cluster.

Registers the ``ray`` executor (``devicelab run SCENARIO --executor ray --address HEAD:PORT``)
and the ``devicelab worker start|stop`` commands that join a host, with the phones attached to
it, to the cluster. Ray is imported only when one of them is used: ``pip install
'devicelab[ray]'``.
"""

from __future__ import annotations

from collections.abc import Callable

import click

import devicelab
from devicelab import Executor

from .executor import RayExecutor


@devicelab.hookimpl
def devicelab_register_executors(register: Callable[[type[Executor]], None]) -> None:
    register(RayExecutor)


@devicelab.hookimpl
def devicelab_register_commands(cli: click.Group) -> None:
    from .worker import worker

    cli.add_command(worker)
