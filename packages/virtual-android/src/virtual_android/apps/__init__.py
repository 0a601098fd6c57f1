"""What runs on the phone's screen: the view tree (ui), the display and its windows (screen),
uiautomator's dump (hierarchy) and selectors (selector), uiautomator2's on-device server
(u2server starts it, u2rpc answers its JSON-RPC), and the two LLM apps, MLCChat and
DocAssist (apps)."""

from .apps import (
    DOCASSIST_PACKAGE,
    MLCCHAT_PACKAGE,
    ChatModel,
    DocAssistApp,
    InstalledApps,
    LLMFactory,
    MLCChatApp,
    apps_of,
    install_apps,
)
from .screen import DeviceScreen, render_screen, screen_of
from .u2server import install_uiautomator
from .ui import LAUNCHER_PACKAGE, UiNode

__all__ = [
    "DOCASSIST_PACKAGE",
    "LAUNCHER_PACKAGE",
    "MLCCHAT_PACKAGE",
    "ChatModel",
    "DeviceScreen",
    "DocAssistApp",
    "InstalledApps",
    "LLMFactory",
    "MLCChatApp",
    "UiNode",
    "apps_of",
    "install_apps",
    "install_uiautomator",
    "render_screen",
    "screen_of",
]
