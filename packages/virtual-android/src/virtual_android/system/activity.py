"""The activity manager: `am` (start, force-stop, kill, broadcast), `monkey`'s launch, the task
on top (the focus the window manager shows) and `dumpsys activity`.

The apps live above the system (apps/): whoever runs them attaches an `ActivityHost` that
finds an app by package and knows which one is in front; with none attached the launcher is
on top and no activity can be started.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .packages import BROWSER_ACTIVITY, BROWSER_PACKAGE, LAUNCHER_ACTIVITY, LAUNCHER_PACKAGE
from .service import SystemService
from .window import window_token

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler
    from .logd import LogBuffer
    from .packages import PackageManager
    from .processes import ProcessTable

__all__ = ["ActivityApp", "ActivityHost", "ActivityService"]


class ActivityApp(Protocol):
    """An app with activities, as the activity manager starts and stops it."""

    package: str
    main_activity: str
    activities: tuple[str, ...]

    @property
    def pid(self) -> int | None: ...

    def running(self) -> bool: ...

    def current_activity(self) -> str: ...

    def force_stop(self) -> None: ...


class ActivityHost(Protocol):
    """The apps and their task stack (apps/ attaches the screen's)."""

    def app(self, package: str) -> ActivityApp | None: ...

    def apps(self) -> list[ActivityApp]: ...

    def top_app(self) -> ActivityApp | None:
        """The app in front, or None when the launcher shows."""
        ...

    def launch(self, app: ActivityApp, activity: str, extras: dict[str, str], data: str) -> None:
        """Start (cold) or resume ``app`` at ``activity`` with an intent's extras and data."""
        ...


class _NoApps:
    def app(self, package: str) -> ActivityApp | None:
        return None

    def apps(self) -> list[ActivityApp]:
        return []

    def top_app(self) -> ActivityApp | None:
        return None

    def launch(self, app: ActivityApp, activity: str, extras: dict[str, str], data: str) -> None:
        raise LookupError(f"no app {app.package} to launch")


_VALUE_OPTIONS = {
    "-a",
    "-d",
    "-t",
    "-c",
    "-n",
    "-f",
    "-p",
    "--user",
    "-R",
    "-P",
    "--start-profiler",
    "--sampling",
    "--attach-agent",
    "--attach-agent-bind",
    "--windowingMode",
    "--activityType",
    "--display",
    "--task",
    "--receiver-permission",
    "--selector",
}
_EXTRA_OPTIONS = {"-e", "--es", "--ei", "--el", "--ef", "--ez", "--eu", "--ecn", "--eia", "--esa"}


@dataclass
class _Intent:
    action: str = ""
    categories: tuple[str, ...] = ()
    component: str = ""
    data: str = ""
    extras: dict[str, str] | None = None
    flags: frozenset[str] = frozenset()

    def describe(self, flags: str = "") -> str:
        parts = []
        if self.action:
            parts.append(f"act={self.action}")
        if self.categories:
            parts.append(f"cat=[{','.join(self.categories)}]")
        if self.data:
            # Android 12+ prints only a URI's scheme and host: `dat=https://example.org/...`
            scheme, sep, rest = self.data.partition("://")
            host = rest.split("/", 1)[0]
            parts.append(f"dat={scheme}://{host}/..." if sep else f"dat={scheme.split(':')[0]}:")
        if flags:
            parts.append(f"flg={flags}")
        if self.component:
            parts.append(f"cmp={self.component}")
        if self.extras:
            parts.append("(has extras)")
        return "Intent { " + " ".join(parts) + " }"


def _parse_intent(args: list[str]) -> _Intent:
    intent = _Intent(extras={})
    categories: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _EXTRA_OPTIONS and i + 2 < len(args):
            assert intent.extras is not None
            intent.extras[args[i + 1]] = args[i + 2]
            i += 3
            continue
        if arg == "--esn" and i + 1 < len(args):
            assert intent.extras is not None
            intent.extras[args[i + 1]] = ""
            i += 2
            continue
        if arg in _VALUE_OPTIONS and i + 1 < len(args):
            value = args[i + 1]
            if arg == "-a":
                intent.action = value
            elif arg == "-c":
                categories.append(value)
            elif arg == "-n":
                intent.component = value
            elif arg == "-d":
                intent.data = value
            i += 2
            continue
        if arg.startswith("-"):
            flags.add(arg)
        elif not intent.component and "/" in arg:
            intent.component = arg  # a bare component, as am accepts
        i += 1
    intent.categories = tuple(categories)
    intent.flags = frozenset(flags)
    return intent


def _resolve_activity(package: str, activity: str) -> str:
    """`.MainActivity` -> `.MainActivity`; `pkg.MainActivity` -> `.MainActivity`."""
    if activity.startswith(package + "."):
        return activity[len(package) :]
    return activity


def _operands(args: list[str]) -> list[str]:
    """Arguments that are not options (`--user 0` takes a value)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--user":
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


_PROTECTED_BROADCASTS = {
    "android.intent.action.AIRPLANE_MODE",
    "android.intent.action.BOOT_COMPLETED",
    "android.intent.action.BATTERY_CHANGED",
    "android.intent.action.SCREEN_ON",
    "android.intent.action.SCREEN_OFF",
    "android.intent.action.REBOOT",
}


def _am_broadcast(ctx: CommandContext, args: list[str]) -> int:
    """`am broadcast`: delivered to nobody here (no app has receivers); protected system
    broadcasts are refused to the shell user, as Android 14 refuses them."""
    intent = _parse_intent(args)
    ctx.write(f"Broadcasting: {intent.describe(flags='0x400000')}\n")
    if intent.action in _PROTECTED_BROADCASTS:
        denial = (
            f"Permission Denial: not allowed to send broadcast {intent.action} from "
            f"pid={ctx.shell.state.pid}, uid=2000"
        )
        ctx.error(
            f"Security exception: {denial}\n\njava.lang.SecurityException: {denial}\n"
            "\tat com.android.server.am.ActivityManagerService.broadcastIntentLocked"
            "(ActivityManagerService.java:15372)\n"
        )
        return 255
    ctx.write("Broadcast completed: result=0\n")
    return 0


def _browser_for(intent: _Intent) -> str:
    """The component a VIEW of an http(s) URI resolves to ("" when nothing handles it)."""
    if intent.action == "android.intent.action.VIEW" and intent.data.split(":", 1)[0] in (
        "http",
        "https",
    ):
        return f"{BROWSER_PACKAGE}/{BROWSER_ACTIVITY}"
    return ""


class ActivityService(SystemService):
    name = "activity"
    tool = "am"

    def __init__(self, processes: ProcessTable, packages: PackageManager, logs: LogBuffer) -> None:
        self._processes = processes
        self._packages = packages
        self._logs = logs
        self._host: ActivityHost = _NoApps()

    def attach(self, host: ActivityHost) -> None:
        """Let the activity manager reach the apps (once they are installed)."""
        self._host = host

    def commands(self) -> dict[str, CommandHandler]:
        return {"am": self.am, "monkey": self.monkey}

    def am(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        if not args:
            ctx.write("Activity manager (activity) commands:\n  start [options] INTENT\n")
            return 0
        verb, rest = args[0], args[1:]
        if verb in ("start", "start-activity"):
            return self._am_start(ctx, rest)
        if verb == "force-stop":
            for package in _operands(rest)[:1]:
                app = self._host.app(package)
                info = self._packages.get(package)
                if app is not None:
                    app.force_stop()
                if info is not None:
                    self._logs.write(
                        "ActivityManager",
                        f"Force stopping {package} appid={info.app_id} user=0: from pid "
                        f"{ctx.shell.state.pid}",
                        pid=self._processes.system_pid("system_server"),
                        buffer="system",
                    )
            return 0
        if verb == "broadcast":
            return _am_broadcast(ctx, rest)
        if verb == "kill":
            for package in _operands(rest)[:1]:
                app = self._host.app(package)
                if app is not None and self._host.top_app() is not app:
                    app.force_stop()  # am kill only reaches background processes
            return 0
        if verb == "kill-all":
            for app in self._host.apps():
                if app is not None and self._host.top_app() is not app:
                    app.force_stop()
            return 0
        ctx.error(f"Error: Unknown command: {verb}\n")
        return 255

    def _am_start(self, ctx: CommandContext, args: list[str]) -> int:
        intent = _parse_intent(args)
        ctx.write(f"Starting: {intent.describe()}\n")
        component = intent.component or _browser_for(intent)
        if not component:
            ctx.error(f"Error: Activity not started, unable to resolve {intent.describe()}\n")
            return 1
        package, _, activity = component.partition("/")
        activity = _resolve_activity(package, activity)
        app = self._host.app(package)
        if app is None or activity not in app.activities:
            full = package + activity if activity.startswith(".") else activity
            ctx.error(f"Error type 3\nError: Activity class {{{package}/{full}}} does not exist.\n")
            return 1
        if "-S" in intent.flags:
            app.force_stop()
        server = self._processes.system_pid("system_server")
        self._logs.write(
            "ActivityTaskManager",
            f"START u0 {{{intent.describe()[len('Intent { ') : -2]}}} with LAUNCH_SINGLE_TOP from "
            f"uid 2000 (BAL_ALLOW_PERMISSION) result code=0",
            pid=server,
            buffer="system",
        )
        began = time.monotonic()
        cold = not app.running()
        on_top = self._host.top_app() is app
        self._host.launch(app, activity, intent.extras or {}, intent.data)
        # What -W reports is the start as this phone performed it, measured, not a made-up
        # figure: the process (cold) and the window coming up.
        total = max(1, math.ceil((time.monotonic() - began) * 1000))
        info = self._packages.get(package)
        if cold and info is not None and app.pid is not None:
            self._logs.write(
                "ActivityManager",
                f"Start proc {app.pid}:{package}/u0a{info.app_id - 10_000} for next-top-activity "
                f"{{{package}/{info.full(activity)}}}",
                pid=server,
                buffer="system",
            )
        if on_top:
            ctx.write(
                "Warning: Activity not started, intent has been delivered to currently running "
                "top-most instance.\n"
            )
        else:
            self._logs.write(
                "ActivityTaskManager",
                f"Displayed {package}/{activity} for user 0: +{total}ms",
                pid=server,
                buffer="system",
            )
        if "-W" in intent.flags:
            state = "COLD" if cold else ("HOT" if not on_top else "UNKNOWN (0)")
            wait = max(total, math.ceil((time.monotonic() - began) * 1000))
            ctx.write(
                f"Status: ok\nLaunchState: {state}\n"
                f"Activity: {package}/{activity}\nTotalTime: {total}\nWaitTime: {wait}\n"
                "Complete\n"
            )
        return 0

    def monkey(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        for arg in args:
            ctx.write(f"  bash arg: {arg}\n")
        packages = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"]
        apps = [a for p in packages if (a := self._host.app(p)) is not None and a.main_activity]
        if not apps:
            ctx.write("** No activities found to run, monkey aborted.\n")
            return 252
        began = time.monotonic()
        self._host.launch(apps[-1], apps[-1].main_activity, {}, "")
        elapsed = int((time.monotonic() - began) * 1000) + 12
        ctx.write(
            "Events injected: 1\n"
            f"## Network stats: elapsed time={elapsed}ms (0ms mobile, 0ms wifi, "
            f"{elapsed}ms not connected)\n"
        )
        return 0

    def focus(self) -> tuple[str, str, str, int]:
        """(package, full activity class, short activity, pid) of the focused window."""
        app = self._host.top_app()
        if app is None:
            pid = 2410  # the launcher's system process
            return LAUNCHER_PACKAGE, LAUNCHER_ACTIVITY, LAUNCHER_ACTIVITY, pid
        activity = app.current_activity()
        full = app.package + activity if activity.startswith(".") else activity
        return app.package, full, activity, app.pid or 0

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        package, _full, activity, pid = self.focus()
        token = window_token(package)
        if args[:1] == ["top"]:
            ctx.write(
                "TASK 10042:" + package + " id=42 userId=0\n"
                f"  ACTIVITY {package}/{activity} {token} pid={pid}\n"
            )
            return 0
        ctx.write(
            "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
            "Display #0 (activities from top to bottom):\n"
            f"  * Task{{{token} #42 type=standard A=10201:{package}}}\n"
            f"  mResumedActivity: ActivityRecord{{{token} u0 {package}/{activity} t42}}\n"
            f"  ResumedActivity: ActivityRecord{{{token} u0 {package}/{activity} t42}}\n"
        )
        return 0
