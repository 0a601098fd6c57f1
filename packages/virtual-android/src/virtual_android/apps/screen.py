"""The virtual S24's display: the windows on it (status bar, launcher or the foreground app,
a toast), the app stack, scrolling, and touches and keys delivered to the views.

The apps (apps.py) build `UiNode` trees; `DeviceScreen` stacks them into `Window`s, which
the u2 server (u2rpc.py) serves as uiautomator would (hierarchy.py), `uiautomator dump`
prints, and render.py draws for `screencap` and screenshots.
"""

from __future__ import annotations

import datetime
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..device import VirtualS24
from ..display import Frame, black_frame
from .hierarchy import render_hierarchy
from .render import draw_windows
from .selector import match_selector
from .ui import (
    LAUNCHER_ACTIVITY,
    LAUNCHER_PACKAGE,
    STATUS_BAR_HEIGHT,
    SYSTEMUI_PACKAGE,
    Rect,
    UiNode,
    Window,
)

if TYPE_CHECKING:
    from .u2rpc import U2Server

__all__ = ["LONG_PRESS_MS", "DeviceScreen", "ScreenApp", "render_screen", "screen_of"]

LONG_PRESS_MS = 400.0  # ViewConfiguration's long-press timeout on Android 12+
_TOUCH_SLOP = 21  # 8 dp at 416 dpi


class ScreenApp(Protocol):
    """An app the screen can show: apps.py implements it."""

    package: str
    label: str
    main_activity: str

    def running(self) -> bool:
        """True while its process exists."""
        ...

    def current_activity(self) -> str: ...

    def launch(self, activity: str, extras: dict[str, str]) -> None:
        """Start (cold) or resume the app; `extras` come from `am start -e/--ei/...`."""
        ...

    def render(self, area: Rect) -> UiNode:
        """The app's window content inside `area` (below the status bar)."""
        ...

    def back(self) -> bool:
        """Handle BACK inside the app; False means: leave it (the launcher shows)."""
        ...


_KEY_NAMES: dict[str, int] = {
    "home": 3,
    "back": 4,
    "left": 21,
    "right": 22,
    "up": 19,
    "down": 20,
    "center": 23,
    "menu": 82,
    "search": 84,
    "enter": 66,
    "delete": 67,
    "del": 67,
    "recent": 187,
    "volume_up": 24,
    "volume_down": 25,
    "volume_mute": 164,
    "camera": 27,
    "power": 26,
}
_DECOR_ICONS = ("Phone", "Messages", "Internet", "Camera", "Settings", "Play Store")


class DeviceScreen:
    """The display of one virtual S24: which app is in front and what it shows.

    One lock (`lock`) guards all UI state of the device, the apps' included, so rendering,
    taps from RPC threads and token callbacks from generation threads never deadlock on
    lock order. Callbacks of nodes run under it; they must not block.

    Scrolling: an app lays a scrollable container's content out at its natural place (a
    chat bottom-aligned, a page from the top) and gives the container a `key`; the screen
    keeps how far each keyed container is scrolled, moves its content by that much and
    clips it to the container, dropping what is out of sight as a RecyclerView does.
    """

    def __init__(self, device: VirtualS24) -> None:
        self.device = device
        self.lock = threading.RLock()
        self._apps: dict[str, ScreenApp] = {}
        self._recent: list[str] = []  # packages brought to front, last is on top
        self._focus: dict[str, str] = {}  # package -> key of the focused node
        self._scroll: dict[tuple[str, str], tuple[int, int]] = {}  # (package, key) -> (x, y)
        self._touch_down: tuple[float, float, float] | None = None  # x, y, when
        self.last_toast: str | None = None
        self.toast_history: list[str] = []  # every toast shown, oldest first (for tests)
        self._toast_package = SYSTEMUI_PACKAGE
        self._toast_until = 0.0
        self.clipboard = ""
        self.servers: dict[int, U2Server] = {}  # device port -> running u2 server
        device.screen_source = self

    # apps
    def register_app(self, app: ScreenApp) -> None:
        with self.lock:
            if app.package in self._apps:
                raise ValueError(f"an app {app.package!r} is already installed")
            self._apps[app.package] = app

    def unregister_app(self, package: str) -> None:
        """The package was uninstalled: off the launcher and the task stack."""
        with self.lock:
            self._apps.pop(package, None)
        self.remove(package)

    def app(self, package: str) -> ScreenApp | None:
        with self.lock:
            return self._apps.get(package)

    def apps(self) -> list[ScreenApp]:
        with self.lock:
            return list(self._apps.values())

    def bring_to_front(self, package: str) -> None:
        with self.lock:
            if package in self._recent:
                self._recent.remove(package)
            self._recent.append(package)

    def remove(self, package: str) -> None:
        """The app's task is gone (force-stop, killed, BACK out of it)."""
        with self.lock:
            if package in self._recent:
                self._recent.remove(package)
            self._focus.pop(package, None)
            for key in [k for k in self._scroll if k[0] == package]:
                del self._scroll[key]

    def go_home(self) -> None:
        """HOME: the launcher comes to front; apps keep running behind it."""
        with self.lock:
            self._recent.append(LAUNCHER_PACKAGE)

    def top_app(self) -> ScreenApp | None:
        """The app in front, or None when the launcher shows. Dead apps fall off the stack."""
        with self.lock:
            while self._recent:
                package = self._recent[-1]
                if package == LAUNCHER_PACKAGE:
                    return None
                app = self._apps.get(package)
                if app is not None and app.running():
                    return app
                self._recent.pop()
                self._focus.pop(package, None)
            return None

    def focus(self, package: str, key: str) -> None:
        with self.lock:
            self._focus[package] = key

    def show_toast(self, text: str, seconds: float = 2.0, package: str = "") -> None:
        """A toast over everything for `seconds` (and getLastToast's answer until cleared)."""
        with self.lock:
            self.last_toast = text
            self.toast_history.append(text)
            self._toast_package = package or SYSTEMUI_PACKAGE
            self._toast_until = time.monotonic() + seconds

    # geometry
    def size(self) -> tuple[int, int]:
        """The display's size in its current rotation."""
        return self.device.display_size()

    def rotation(self) -> int:
        return self.device.rotation()

    # windows
    def windows(self, scrolled: bool = True) -> list[Window]:
        """Bottom to top: the app (or launcher) window, the status bar, a toast if shown.

        `scrolled=False` leaves scrollable content where the app laid it out (to measure it).
        """
        with self.lock:
            width, height = self.size()
            area = (0, STATUS_BAR_HEIGHT, width, height)
            app = self.top_app()
            if app is None:
                package, activity = LAUNCHER_PACKAGE, LAUNCHER_ACTIVITY
                content = self._launcher(area)
            else:
                package, activity = app.package, app.current_activity()
                content = app.render(area)
            main = Window(package, activity, _decor(content, width, height, area))
            _finish(main.root, package, self._focus.get(package, ""))
            if scrolled:
                self._apply_scroll(main.root, package)
                # What lies outside the display (a layout taller than a landscape screen)
                # is not on screen, and uiautomator does not list it.
                root = main.root
                root.children = _shifted_and_clipped(root.children, 0, 0, root.bounds)
            bar = Window(SYSTEMUI_PACKAGE, "StatusBar", self._status_bar(width))
            _finish(bar.root, SYSTEMUI_PACKAGE, "")
            windows = [main, bar]
            if self.last_toast and time.monotonic() < self._toast_until:
                toast = UiNode(
                    "android.widget.Toast",
                    (width // 4, height - 420, width * 3 // 4, height - 300),
                    text=self.last_toast,
                )
                _finish(toast, self._toast_package, "")
                windows.append(Window(self._toast_package, "Toast", toast))
            return windows

    def active_window(self) -> Window:
        return self.windows()[0]

    def hierarchy_xml(self, compressed: bool = False, max_depth: int = 50) -> str:
        """What uiautomator dumps: the u2 server's dumpWindowHierarchy and `uiautomator dump`."""
        return render_hierarchy(self.windows(), self.rotation(), compressed, max(1, max_depth))

    def frame(self) -> Frame:
        """The picture on the display (black while the screen is off)."""
        with self.lock:
            width, height = self.size()
            if not self.device.screen_on:
                return black_frame(width, height)
            image = draw_windows(self.windows(), (width, height))
        return Frame(width, height, image.tobytes())

    def _status_bar(self, width: int) -> UiNode:
        now = datetime.datetime.now().strftime("%H:%M")
        level = self.device.model.battery().level
        bar = UiNode("android.widget.FrameLayout", (0, 0, width, STATUS_BAR_HEIGHT))
        bar.children = [
            UiNode(
                "android.widget.TextView",
                (40, 20, 200, 90),
                text=now,
                resource_id="com.android.systemui:id/clock",
                content_desc=now,
            ),
            UiNode(
                "android.widget.TextView",
                (width - 200, 20, width - 40, 90),
                text=f"{level}%",
                resource_id="com.android.systemui:id/battery_percentage_view",
                content_desc=f"Battery {level} percent.",
            ),
        ]
        return bar

    def _launcher(self, area: Rect) -> UiNode:
        left, top, right, _bottom = area
        workspace = UiNode(
            "android.view.ViewGroup",
            area,
            resource_id="com.sec.android.app.launcher:id/workspace",
            scrollable=True,
        )
        labels: list[tuple[str, Callable[[], None] | None]] = [
            (label, None) for label in _DECOR_ICONS
        ]
        for app in self._apps.values():
            labels.append((app.label, self._launcher_action(app.package)))
        columns, cell_w, cell_h = 4, (right - left) // 4, 300
        for i, (label, action) in enumerate(labels):
            x = left + (i % columns) * cell_w
            y = top + 200 + (i // columns) * cell_h
            workspace.children.append(
                UiNode(
                    "android.widget.TextView",
                    (x, y, x + cell_w, y + cell_h),
                    text=label,
                    resource_id="com.sec.android.app.launcher:id/icon",
                    content_desc=label,
                    clickable=True,
                    focusable=True,
                    long_clickable=True,
                    on_click=action,
                )
            )
        return workspace

    def _launcher_action(self, package: str) -> Callable[[], None]:
        def launch() -> None:
            app = self.app(package)
            if app is not None:
                app.launch(app.main_activity, {})

        return launch

    # scrolling
    def _apply_scroll(self, root: UiNode, package: str) -> None:
        for node in root.walk():  # walk reads each node's children after yielding it
            if node.scrollable and node.key and node.children:
                limits = _scroll_limits(node)
                x, y = self._scroll.get((package, node.key), (0, 0))
                x, y = _clamp(x, limits[0]), _clamp(y, limits[1])
                node.children = _shifted_and_clipped(node.children, -x, -y, node.bounds)

    def scroll(self, node: UiNode, vertical: bool, delta: int) -> tuple[bool, bool]:
        """Scroll a container seen on screen by `delta` px (> 0: forward, content moves up
        or left). Returns (moved, at the end in that direction afterwards)."""
        with self.lock:
            window = self.windows(scrolled=False)[0]
            natural = next(
                (n for n in window.root.walk() if n.scrollable and n.key and n.key == node.key),
                None,
            )
            if natural is None or not node.key:
                return False, True
            limits = _scroll_limits(natural)
            key = (window.package, node.key)
            x, y = self._scroll.get(key, (0, 0))
            x, y = _clamp(x, limits[0]), _clamp(y, limits[1])
            low, high = limits[1] if vertical else limits[0]
            old = y if vertical else x
            new = max(low, min(high, old + delta))
            self._scroll[key] = (x, new) if vertical else (new, y)
            return new != old, new == (high if delta > 0 else low)

    def scrollable_at(self, x: float, y: float) -> UiNode | None:
        """The innermost scrolling container under a point of the active window."""
        found: UiNode | None = None
        node: UiNode | None = self.active_window().root
        while node is not None:
            if node.scrollable and node.key:
                found = node
            node = next((c for c in reversed(node.children) if c.contains(x, y)), None)
        return found

    def swipe(self, x1: float, y1: float, x2: float, y2: float) -> bool:
        """A finger moved from (x1, y1) to (x2, y2): the list under it follows the finger."""
        with self.lock:
            if not self.device.screen_on:
                return False
            target = self.scrollable_at(x1, y1)
            if target is None:
                return False
            vertical = abs(y2 - y1) >= abs(x2 - x1)
            delta = int(y1 - y2) if vertical else int(x1 - x2)
            moved, _ = self.scroll(target, vertical, delta)
            return moved

    # input
    def touch(self, action: int, x: float, y: float) -> None:
        """One pointer event (MotionEvent ACTION_DOWN 0, UP 1, MOVE 2, CANCEL 3): a DOWN and
        an UP make a tap (a long press when held 400 ms), or a swipe when the finger moved."""
        with self.lock:
            if action == 0:
                self._touch_down = (x, y, time.monotonic())
                return
            if action == 3:
                self._touch_down = None
            if action != 1 or self._touch_down is None:
                return
            x0, y0, began = self._touch_down
            self._touch_down = None
            if abs(x - x0) > _TOUCH_SLOP or abs(y - y0) > _TOUCH_SLOP:
                self.swipe(x0, y0, x, y)
            else:
                held_ms = (time.monotonic() - began) * 1000
                self.tap(x, y, long_press=held_ms >= LONG_PRESS_MS)

    def find(self, selector: dict[str, Any]) -> list[UiNode]:
        """Matches in the active window only, like UiDevice.findObject."""
        return match_selector([self.active_window().root], selector)

    def tap(self, x: float, y: float, long_press: bool = False) -> bool:
        """A finger tap: the topmost, deepest clickable or editable node under it reacts.

        A long press on a long-clickable view is its long click (nothing here reacts to
        that), not a click; a view that is not long-clickable still clicks on release.
        While the screen is off, touches do not reach the apps.
        """
        with self.lock:
            if not self.device.screen_on:
                return False
            windows = self.windows()
            for window in reversed(windows):
                if not window.root.contains(x, y):
                    continue
                target = _hit(window.root, x, y)
                if target is None:
                    if window.activity == "Toast":
                        continue  # toasts do not take touches
                    return False
                if not target.enabled:
                    return True  # a disabled view swallows the touch
                if target.editable:
                    self.focus(window.package, target.key)
                if long_press and target.long_clickable:
                    return True
                if target.on_click is not None:
                    target.on_click()
                return True
            return False

    def set_text(self, node: UiNode, text: str) -> bool:
        with self.lock:
            if node.on_text is None or not node.enabled:
                return False
            self.focus(node.package, node.key)
            node.on_text(text)
            return True

    def focused_node(self) -> UiNode | None:
        window = self.active_window()
        return next((n for n in window.root.walk() if n.focused and n.editable), None)

    def type_text(self, text: str) -> bool:
        """Text from `input text` or a paste: appended to the focused field."""
        with self.lock:
            node = self.focused_node()
            if node is None or node.on_text is None:
                return False
            current = "" if node.text == node.hint and node.hint else node.text
            node.on_text(current + text)
            return True

    def press_key(self, key: int | str) -> bool:
        code = key if isinstance(key, int) else _KEY_NAMES.get(str(key).lower(), -1)
        with self.lock:
            if self.device.press_power_key(code):
                return True
            if code == 3:
                self.go_home()
            elif code == 4:
                app = self.top_app()
                if app is not None and not app.back():
                    self.remove(app.package)
            elif code == 67:
                node = self.focused_node()
                if node is not None and node.on_text is not None and node.text != node.hint:
                    node.on_text(node.text[:-1])
            elif code < 0:
                return False
            return True


def _decor(content: UiNode, width: int, height: int, area: Rect) -> UiNode:
    """An activity's window: DecorView > LinearLayout > android:id/content > the app's views."""
    frame = UiNode(
        "android.widget.FrameLayout", area, resource_id="android:id/content", children=[content]
    )
    column = UiNode("android.widget.LinearLayout", (0, 0, width, height), children=[frame])
    return UiNode("android.widget.FrameLayout", (0, 0, width, height), children=[column])


def _scroll_limits(node: UiNode) -> tuple[tuple[int, int], tuple[int, int]]:
    """How far a container's content can move: ((min x, max x), (min y, max y)) offsets, 0
    being where the app laid it out."""
    left, top, right, bottom = node.bounds
    inner = [n.bounds for child in node.children for n in child.walk()]
    c_left = min((b[0] for b in inner), default=left)
    c_top = min((b[1] for b in inner), default=top)
    c_right = max((b[2] for b in inner), default=right)
    c_bottom = max((b[3] for b in inner), default=bottom)
    x_limits = (min(0, c_left - left), max(0, c_right - right))
    y_limits = (min(0, c_top - top), max(0, c_bottom - bottom))
    return x_limits, y_limits


def _clamp(value: int, limits: tuple[int, int]) -> int:
    return max(limits[0], min(limits[1], value))


def _shifted_and_clipped(nodes: list[UiNode], dx: int, dy: int, box: Rect) -> list[UiNode]:
    """Nodes moved by (dx, dy); those out of `box` dropped, the rest clipped to it (the
    visible bounds uiautomator reports)."""
    out: list[UiNode] = []
    b_left, b_top, b_right, b_bottom = box
    for node in nodes:
        left, top, right, bottom = node.bounds
        hidden = node.hidden_above + max(0, b_top - (top + dy))
        left, right = max(b_left, left + dx), min(b_right, right + dx)
        top, bottom = max(b_top, top + dy), min(b_bottom, bottom + dy)
        if left >= right or top >= bottom:
            continue
        node.bounds = (left, top, right, bottom)
        node.hidden_above = hidden
        node.children = _shifted_and_clipped(node.children, dx, dy, node.bounds)
        out.append(node)
    return out


def _finish(node: UiNode, package: str, focus_key: str) -> None:
    for each in node.walk():
        if not each.package:
            each.package = package
        if focus_key and each.key == focus_key:
            each.focused = True


def _hit(node: UiNode, x: float, y: float) -> UiNode | None:
    # Later children draw on top, so they are tried first.
    for child in reversed(node.children):
        if child.contains(x, y):
            found = _hit(child, x, y)
            if found is not None:
                return found
    if node.contains(x, y) and (node.clickable or node.editable):
        return node
    return None


_SCREENS: weakref.WeakKeyDictionary[VirtualS24, DeviceScreen] = weakref.WeakKeyDictionary()
_SCREENS_LOCK = threading.Lock()


def screen_of(device: VirtualS24) -> DeviceScreen:
    """The device's screen (created on first use; one per device)."""
    with _SCREENS_LOCK:
        screen = _SCREENS.get(device)
        if screen is None:
            screen = DeviceScreen(device)
            _SCREENS[device] = screen
        return screen


def render_screen(device: VirtualS24) -> Frame:
    """The display of `device` now: `.width`, `.height`, `.rgba` (RGBA 8888 pixels, rows top
    to bottom) and `.png()`.

    It draws the windows uiautomator sees, in the current rotation (2340 x 1080 in
    landscape); while the screen is off the picture is black, as a phone's screenshot is.
    This is what `screencap`, uiautomator2's takeScreenshot and the framebuffer service show.
    """
    return screen_of(device).frame()
