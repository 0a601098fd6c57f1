"""Android phones over ADB (adbutils) and their apps through uiautomator2.

Registers the ``android`` device kind, ``llama.cpp`` for Android (the user's arm64
``llama-cli`` run over adb shell) and ``app`` (a model inside an app, measured through its
UI with declarative steps; built-in profiles for MLC-LLM's MLCChat and the DocAssist app).
Needs ``pip install 'devicelab[android]'``; imports happen when a phone is used.
"""

from __future__ import annotations

from collections.abc import Callable

import devicelab
from devicelab import DeviceType, Engine


@devicelab.hookimpl
def devicelab_register_devices(
    register: Callable[[DeviceType], None], registry: devicelab.Registry
) -> None:
    from .device import AndroidType

    register(AndroidType(registry))


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    from .app import AppEngine
    from .llamacli import LlamaCliEngine

    register(LlamaCliEngine)
    register(AppEngine)
