"""What runs on the phone's screen: uiautomator2's on-device JSON-RPC server and its UI tree
(u2server), and the two LLM apps, MLCChat and DocAssist (apps)."""

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
from .u2server import (
    LAUNCHER_PACKAGE,
    DeviceScreen,
    UiNode,
    install_uiautomator,
    render_screen,
    screen_of,
)

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
