"""Apps the package manager knows but that have no emulation of their own: an installed APK
(`adb install`) and the phone's browser. Started by `am start` (or their launcher icon), each
is a process and a window showing its label; uninstalling removes it from the screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..system.packages import Package
from ..system.window import STATUS_BAR_HEIGHT
from .process import AppProcess
from .screen import DeviceScreen
from .ui import Rect, UiNode

if TYPE_CHECKING:
    from ..device import VirtualS24

__all__ = ["InstalledApp", "follow_package_manager"]


class InstalledApp(AppProcess):
    """A ScreenApp for a package: its process, its activities, a window with its name."""

    def __init__(self, device: VirtualS24, screen: DeviceScreen, package: Package) -> None:
        self.device = device
        self.screen = screen
        self.info = package
        self.package = package.name
        self.label = package.label or package.name.rsplit(".", 1)[-1]
        launcher = package.launcher_activity or (package.activities[:1] or ("",))[0]
        self.main_activity = package.short(launcher) if launcher else ""
        self.activities = tuple(package.short(a) for a in package.activities)
        self._pid: int | None = None
        self._activity = self.main_activity
        self.data = ""  # the last intent's data URI (a browser's address bar)

    def current_activity(self) -> str:
        return self._activity

    def launch(self, activity: str, extras: dict[str, str]) -> None:
        with self.screen.lock:
            if not self.running():
                self._pid = self.device.register_process(self.package)
                self.device.set_process_rss(self._pid, 52_000)
            self._activity = activity or self.main_activity
            self.screen.bring_to_front(self.package)

    def back(self) -> bool:
        return False

    def force_stop(self) -> None:
        with self.screen.lock:
            pid, self._pid = self._pid, None
            self.screen.remove(self.package)
        if pid is not None:
            self.device.kill_process(pid)

    def render(self, area: Rect) -> UiNode:
        left, top, right, _bottom = area
        text = self.data or self.label
        return UiNode(
            "android.widget.FrameLayout",
            area,
            children=[
                UiNode(
                    "android.widget.TextView",
                    (left + 40, top + STATUS_BAR_HEIGHT, right - 40, top + STATUS_BAR_HEIGHT + 120),
                    text=text,
                )
            ],
        )


def follow_package_manager(device: VirtualS24, screen: DeviceScreen) -> None:
    """Keep the screen's apps in step with the package manager: an installed package with
    activities becomes launchable, an uninstalled one stops and leaves the launcher."""

    def changed(event: str, package: Package) -> None:
        existing = screen.app(package.name)
        if event in ("removed", "cleared") and isinstance(existing, InstalledApp):
            existing.force_stop()
            if event == "removed":
                screen.unregister_app(package.name)
        elif event == "installed" and package.activities:
            if isinstance(existing, InstalledApp):
                existing.force_stop()
                screen.unregister_app(package.name)
            if existing is None or isinstance(existing, InstalledApp):
                screen.register_app(InstalledApp(device, screen, package))

    device.packages.on_change(changed)
