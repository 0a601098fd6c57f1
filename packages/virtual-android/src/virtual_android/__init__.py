"""virtual-android: a virtual Samsung Galaxy S24 (SM-S921B) that speaks the ADB wire protocol as
adbd does, for testing adb-based code without a phone.

The real ``adb`` binary, adbutils and uiautomator2 drive it as they drive a phone. Its shell
runs only the commands it emulates: nothing sent to it is ever executed on the host. Its apps
and its ``llama-cli`` run models through a :class:`TextBackend` the host supplies; or, for
``llama-cli``, a host build of llama.cpp's real CLI that the host allows
(:func:`allow_host_binaries`: the allowed host file runs when a client pushes the same bytes,
never the pushed file itself).

    from virtual_android import make_phone, shutdown_phone

    phone = make_phone()            # port 0: any free loopback port outside 5555-5585
    phone.start()
    ...                             # adb connect phone.serial
    shutdown_phone(phone)

Every exception class it defines derives from :class:`VirtualAndroidError`. Its pytest plugin
(:mod:`virtual_android.pytest_plugin`) gives a project's tests a private adb server and a
started phone on it.
"""

from .apps.apps import apps_of, install_apps
from .apps.screen import render_screen, screen_of
from .apps.u2server import install_uiautomator
from .cli import serve
from .device import CommandContext, CommandHandler, InputEvent, VirtualS24
from .display import Frame
from .errors import VirtualAndroidError
from .fs.filesystem import FsError, VirtualFS
from .inference.backend import (
    BackendFactory,
    BackendResult,
    ChatMessage,
    TextBackend,
    TextRequest,
    TokenSink,
    WordsBackend,
)
from .inference.llamacli import install_llama_cli
from .inference.llm import (
    DeviceLLM,
    GenerationCancelled,
    GenerationStats,
    NoBackendError,
    release_llms,
    use_backend,
)
from .inference.realcli import allow_host_binaries
from .phone import make_phone, shutdown_phone
from .ports import free_port
from .shell.shellio import CancelToken, ShellCancelled

__all__ = [
    "BackendFactory",
    "BackendResult",
    "CancelToken",
    "ChatMessage",
    "CommandContext",
    "CommandHandler",
    "DeviceLLM",
    "Frame",
    "FsError",
    "GenerationCancelled",
    "GenerationStats",
    "InputEvent",
    "NoBackendError",
    "ShellCancelled",
    "TextBackend",
    "TextRequest",
    "TokenSink",
    "VirtualAndroidError",
    "VirtualFS",
    "VirtualS24",
    "WordsBackend",
    "allow_host_binaries",
    "apps_of",
    "free_port",
    "install_apps",
    "install_llama_cli",
    "install_uiautomator",
    "make_phone",
    "release_llms",
    "render_screen",
    "screen_of",
    "serve",
    "shutdown_phone",
    "use_backend",
]
