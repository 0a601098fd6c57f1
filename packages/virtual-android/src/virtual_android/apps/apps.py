"""Two apps with real inference on the virtual S24: MLCChat and DocAssist.

    install_uiautomator(dev)                       # u2server.py
    install_apps(dev)                              # models: inference.llm.DeviceLLM(dev)
    apps_of(dev).mlcchat.max_tokens = 8            # keep test generations short

Each app is a process while it runs (`pidof PKG`, `ps`, `dumpsys meminfo PKG`), is started by
`am start -n PKG/.MainActivity`, `monkey -p PKG -c android.intent.category.LAUNCHER 1` or a tap
on its launcher icon, and is stopped by `am force-stop PKG` or by killing its process. Its
screen is a `UiNode` tree the uiautomator2 server (u2server.py) renders and clicks.

- MLCChat (`ai.mlc.mlcchat/.MainActivity`) mirrors MLC-LLM's Jetpack Compose app: no
  resource-ids. Home: a row per model id with a `start chatting` button. Chat: a report text
  (`Initialize...`, `Ready to chat`, then `prefill: X tok/s, decode: Y tok/s` after each
  answer), the messages, an EditText showing `Input` when empty, and buttons described
  `send message` (enabled when the model is ready and not generating), `reset the chat` and
  `back home page`.
- DocAssist (`ai.devicelab.docassist/.MainActivity`) is a classic View app with resource-ids
  `ai.devicelab.docassist:id/{document,request,max_tokens,run,status,response,stats}`. Run
  builds the reference study's prompt, streams the answer into `response`, shows `status`
  (`idle`, `loading`, `generating`, `done`, `stopped`, `error: ...`) and `stats`
  (`prefill: X tok/s, decode: Y tok/s, ttft: Z s`). Max tokens come from the `max_tokens`
  field, the launch extra `--ei max_tokens N`, or `apps_of(dev).docassist.max_tokens`.

The apps reach the framework by attaching to its services (system/): their task stack to the
activity manager (`am`, `monkey`, `dumpsys activity|window` see it) and the screen to the input
manager (`input` taps, keys, swipes and text reach it).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from ..device import VirtualS24
from ..system.activity import ActivityApp
from ..system.input import InputEvent
from ..system.packages import BROWSER_PACKAGE, Package
from .docassist import DOCASSIST_PACKAGE, DOCASSIST_SYSTEM_PROMPT, DocAssistApp
from .installed import InstalledApp, follow_package_manager
from .llmapp import DEFAULT_MAX_TOKENS, ChatModel, LLMApp, LLMFactory, rates
from .mlcchat import MLCCHAT_PACKAGE, MLCChatApp
from .u2server import DeviceScreen, screen_of

__all__ = [
    "DOCASSIST_PACKAGE",
    "DOCASSIST_SYSTEM_PROMPT",
    "MLCCHAT_PACKAGE",
    "ChatModel",
    "DocAssistApp",
    "InstalledApps",
    "LLMFactory",
    "MLCChatApp",
    "apps_of",
    "install_apps",
    "rates",
]

_PREINSTALLED = 1_726_826_400.0  # 2024-09-20 10:00 UTC: the apps came with the phone's image


@dataclass
class InstalledApps:
    mlcchat: MLCChatApp
    docassist: DocAssistApp

    def all(self) -> list[LLMApp]:
        return [self.mlcchat, self.docassist]


_INSTALLED: weakref.WeakKeyDictionary[VirtualS24, InstalledApps] = weakref.WeakKeyDictionary()


def apps_of(dev: VirtualS24) -> InstalledApps:
    """The apps install_apps put on `dev` (to set max_tokens, temperature, read last_stats)."""
    apps = _INSTALLED.get(dev)
    if apps is None:
        raise LookupError(f"no apps installed on {dev!r}: call install_apps(dev, llm_factory)")
    return apps


def install_apps(
    dev: VirtualS24,
    llm_factory: LLMFactory | None = None,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> None:
    """Install MLCChat and DocAssist, attached to the activity and input managers.

    `llm_factory(dev)` makes the model an app process loads (default: inference.DeviceLLM,
    one per process, as each app on a phone loads its own copy of the weights).
    """
    if dev in _INSTALLED:
        raise ValueError(f"apps are already installed on {dev!r}")
    if llm_factory is None:
        from ..inference.llm import DeviceLLM

        llm_factory = DeviceLLM
    screen = screen_of(dev)
    apps = InstalledApps(
        MLCChatApp(dev, screen, llm_factory, max_tokens),
        DocAssistApp(dev, screen, llm_factory, max_tokens),
    )
    for app in apps.all():
        screen.register_app(app)
        dev.packages.register(
            Package(
                app.package,
                activities=tuple(app.package + a for a in app.activities),
                launcher_activity=app.package + app.main_activity,
                permissions=("android.permission.INTERNET",),
                label=app.label,
                first_install=_PREINSTALLED,
                last_update=_PREINSTALLED,
            )
        )
    follow_package_manager(dev, screen)
    browser = dev.packages.get(BROWSER_PACKAGE)
    if browser is not None and screen.app(BROWSER_PACKAGE) is None:
        screen.register_app(InstalledApp(dev, screen, browser))
    _INSTALLED[dev] = apps

    def stop_everything() -> None:  # the phone goes down: every app process ends
        for app in screen.apps():
            if isinstance(app, (LLMApp, InstalledApp)):
                app.force_stop()

    dev.on_reboot(stop_everything)
    dev.activity.attach(_TaskStack(screen))
    dev.input.on_event(_screen_reacts(screen))


_POWER_KEYS = (26, 223, 224)  # POWER, SLEEP, WAKEUP: the power manager's, not the screen's


def _screen_reacts(screen: DeviceScreen) -> Callable[[InputEvent], None]:
    """What an injected event does to the apps' screen."""

    def react(event: InputEvent) -> None:
        if event.kind == "tap":
            screen.tap(float(event.args[0]), float(event.args[1]))
        elif event.kind == "keyevent" and int(event.args[0]) not in _POWER_KEYS:
            screen.press_key(int(event.args[0]))
        elif event.kind == "motionevent":
            action, x, y = event.args[:3]
            screen.touch(int(action), float(x), float(y))
        elif event.kind in ("swipe", "draganddrop"):
            x1, y1, x2, y2 = (float(v) for v in event.args[:4])
            screen.swipe(x1, y1, x2, y2)
        elif event.kind == "text":
            screen.type_text(str(event.args[0]))

    return react


class _TaskStack:
    """The screen's apps as the activity manager sees them (system/activity.py's ActivityHost):
    only apps with activities, LLM apps and installed packages."""

    def __init__(self, screen: DeviceScreen) -> None:
        self._screen = screen

    def app(self, package: str) -> LLMApp | InstalledApp | None:
        app = self._screen.app(package)
        return app if isinstance(app, (LLMApp, InstalledApp)) else None

    def apps(self) -> list[ActivityApp]:
        return [a for a in self._screen.apps() if isinstance(a, (LLMApp, InstalledApp))]

    def top_app(self) -> LLMApp | InstalledApp | None:
        app = self._screen.top_app()
        return app if isinstance(app, (LLMApp, InstalledApp)) else None

    def launch(self, app: ActivityApp, activity: str, extras: dict[str, str], data: str) -> None:
        if isinstance(app, InstalledApp):
            app.data = data  # a browser's address bar
        if isinstance(app, (LLMApp, InstalledApp)):
            app.launch(activity, extras)
