"""Hermetic tests: only the plugins these tests need load, however many are installed.

The example plugin itself is added by each test: through ``registry_with`` or the
``devicelab_plugin`` fixture (both from devicelab), or by naming its entry point.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devicelab.testing import reset_plugins

NEEDED = "host,llamacpp,docassist"


@pytest.fixture(autouse=True)
def hermetic_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DEVICELAB_PLUGINS", NEEDED)
    monkeypatch.delenv("DEVICELAB_DISABLE_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()
