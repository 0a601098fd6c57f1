"""devicelab's pytest plugin (the ``pytest11`` entry point ``devicelab``): fixtures for
plugin authors.

``devicelab_plugin`` installs a plugin object for one test, through a throwaway ``devicelab``
entry point (see :func:`devicelab.testing.installed_plugin`), and removes it afterwards::

    def test_listed(devicelab_plugin):
        registry = devicelab_plugin(MyPlugin(), "mine")
        assert "MINE" in registry.tasks
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from .plugin_manager import Registry
from .testing import installed_plugin

InstallPlugin = Callable[..., Registry]


@pytest.fixture
def devicelab_plugin() -> Iterator[InstallPlugin]:
    """``install(plugin, name=None) -> Registry``: install ``plugin`` (a module or an object
    with ``@devicelab.hookimpl`` methods) until the test ends; returns the registry
    ``devicelab`` now loads, which ``devicelab plugins`` and ``devicelab run`` also see."""
    with ExitStack() as stack:

        def install(plugin: object, name: str | None = None) -> Registry:
            return stack.enter_context(installed_plugin(plugin, name))

        yield install
