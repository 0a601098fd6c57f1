"""The plugins' tests import the built-in plugins from plugins/. Their adb fixtures (a private
adb server, a connected virtual S24) come from virtual-android's pytest plugin; the shipped
models' files (``gemma_path``) from tests/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))
