"""Every hook devicelab calls, in one place.

A plugin is a module (or object) whose functions are marked with ``@devicelab.hookimpl`` and
named like the specs below; it is found through the ``devicelab`` entry-point group. Each
``register`` hook receives a callable; call it once per thing the plugin offers. Names must
be unique across plugins: a second registration of the same name is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from ._api import (
        CollectorFactory,
        CorpusSpec,
        DeviceType,
        Engine,
        Metric,
        ModelSpec,
        Quantizer,
        Task,
    )
    from ._executor import Executor
    from ._registry import Registry

hookspec = pluggy.HookspecMarker("devicelab")
hookimpl = pluggy.HookimplMarker("devicelab")


@hookspec
def devicelab_register_devices(register: Callable[[DeviceType], None], registry: Registry) -> None:
    """Register device types.

    :param register: call with a :class:`~devicelab.DeviceType` instance; its ``kind``
        (``"host"``, ``"android"``, ...) must be unique.
    :param registry: the registry being built (optional: take it only if you need it). Keep
        it to reach other plugins' models, engines or device kinds once the run starts; it is
        complete after every plugin has registered.
    """


@hookspec
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    """Register engines.

    :param register: call with an :class:`~devicelab.Engine` subclass; the pair of its
        ``name`` and each of its ``device_kinds`` must be unique, so one engine name (say
        ``"llama.cpp"``) can have one implementation per kind of device.
    """


@hookspec
def devicelab_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models by name.

    :param register: call with a :class:`~devicelab.ModelSpec`; ``name`` must be unique.
    """


@hookspec
def devicelab_register_tasks(register: Callable[[Task], None]) -> None:
    """Register tasks.

    :param register: call with a :class:`~devicelab.Task` instance; ``kind`` must be
        unique (``"SUMM"``, ``"QS"``, ``"QA"``, ...).
    """


@hookspec
def devicelab_register_corpora(register: Callable[[CorpusSpec], None]) -> None:
    """Register document corpora by name.

    :param register: call with a :class:`~devicelab.CorpusSpec`; ``name`` must be unique.
    """


@hookspec
def devicelab_register_collectors(register: Callable[[str, CollectorFactory], None]) -> None:
    """Register telemetry collectors that work beside any device's own.

    :param register: call with a unique name and a factory ``factory(device)`` returning a
        :class:`~devicelab.Collector`, or ``None`` where it does not apply to that device.
    """


@hookspec
def devicelab_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register quality metrics.

    :param register: call with a :class:`~devicelab.Metric` subclass; its ``name`` (what
        a scenario lists in ``[quality] metrics``) must be unique.
    """


@hookspec
def devicelab_register_quantizers(register: Callable[[Quantizer], None]) -> None:
    """Register quantisers: tools that make quantised model files for some engines.

    :param register: call with a :class:`~devicelab.Quantizer` instance; its ``backend``
        (``"gguf"``, ``"mlc"``, ...) must be unique. ``devicelab quantize`` and scenarios that
        ask a registered model for a quantisation it does not ship use it.
    """


@hookspec
def devicelab_register_executors(register: Callable[[type[Executor]], None]) -> None:
    """Register executors: what runs a scenario's trials, and where (``--executor NAME``).

    :param register: call with an :class:`~devicelab.Executor` subclass; its
        ``name`` must be unique (``"local"``, the default, is devicelab's own).
    """


@hookspec
def devicelab_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``devicelab`` command line.

    :param cli: the top-level click group; add commands with ``@cli.command()``.
    """
