"""uiautomator2's on-device server, emulated on the virtual S24, and the screen it reads.

What `uiautomator2.connect(serial)` (3.x) does on a phone, and what is emulated here:

1. `toybox md5sum /data/local/tmp/u2.jar` (the shell's builtin), then `sync` push of the
   jar when the hash differs (the sync service).
2. `CLASSPATH=/data/local/tmp/u2.jar app_process / com.wetest.uia2.Main -p 9008` in a
   streaming shell: the `app_process` command registered here. It starts a real HTTP server
   on a free loopback port of the host and bridges the device's `tcp:9008` to it
   (`expose_port`), then lives until the shell stream is closed or the process is killed.
3. `GET /ping` -> `pong` over `tcp:9008` until ready, then one `POST /jsonrpc/0` per call.

The JSON-RPC methods answer from a `DeviceScreen`: the windows on the display (status bar,
launcher or the foreground app), built as `UiNode` trees by the apps (see apps.py) and
rendered as the XML uiautomator dumps and, by render.py, as the picture screenshots show.
Gestures take as long as UiAutomator takes to inject them (5 ms a step); swipes and
UiScrollable's calls scroll the containers the apps mark. Errors use the server's shapes,
so uiautomator2 maps `UiObjectNotFoundException` to `UiObjectNotFoundError`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.server
import io
import json
import logging
import posixpath
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ..device import VirtualS24
from ..display import Frame, black_frame
from ..shell.interpreter import CommandContext
from .render import draw_windows
from .ui import (
    LAUNCHER_ACTIVITY,
    LAUNCHER_PACKAGE,
    STATUS_BAR_HEIGHT,
    SYSTEMUI_PACKAGE,
    Rect,
    UiNode,
    Window,
)

log = logging.getLogger(__name__)

__all__ = [
    "LAUNCHER_ACTIVITY",
    "LAUNCHER_PACKAGE",
    "STATUS_BAR_HEIGHT",
    "SYSTEMUI_PACKAGE",
    "U2_MAIN_CLASS",
    "DeviceScreen",
    "Rect",
    "RpcError",
    "ScreenApp",
    "U2Server",
    "UiNode",
    "Window",
    "describe_selector",
    "install_uiautomator",
    "match_selector",
    "obj_info",
    "render_hierarchy",
    "render_screen",
    "screen_of",
]

U2_MAIN_CLASS = "com.wetest.uia2.Main"
U2_JAR = "/data/local/tmp/u2.jar"
DEFAULT_PORT = 9008
_POLL_S = 0.05


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


# -- XML -------------------------------------------------------------------------------
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _attr(value: str) -> str:
    # Model output can hold any character; XML 1.0 cannot, so invalid ones are dropped and
    # the rest escaped the way Android's XmlSerializer does.
    value = _XML_INVALID.sub("", value)
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


def _is_plain_container(node: UiNode) -> bool:
    """What uiautomator's compressed dump leaves out: layout-only nodes."""
    return not (
        node.text
        or node.content_desc
        or node.resource_id
        or node.clickable
        or node.scrollable
        or node.focusable
        or node.checkable
        or node.long_clickable
        or node.editable
    )


def _compress(nodes: list[UiNode]) -> list[UiNode]:
    out: list[UiNode] = []
    for node in nodes:
        children = _compress(node.children)
        if _is_plain_container(node) and node.children:
            out.extend(children)
        else:
            out.append(_replace_children(node, children))
    return out


def _replace_children(node: UiNode, children: list[UiNode]) -> UiNode:
    return dataclasses.replace(node, children=children)


def render_hierarchy(
    windows: list[Window], rotation: int, compressed: bool = False, max_depth: int = 50
) -> str:
    """Windows -> the XML `dumpWindowHierarchy` returns (Android's attribute set and order)."""
    lines = [
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>",
        f'<hierarchy rotation="{rotation}">',
    ]

    def emit(node: UiNode, index: int, depth: int, order: int) -> None:
        left, top, right, bottom = node.bounds
        attrs = (
            f'index="{index}" text="{_attr(node.text)}" resource-id="{_attr(node.resource_id)}" '
            f'class="{_attr(node.class_name)}" package="{_attr(node.package)}" '
            f'content-desc="{_attr(node.content_desc)}" checkable="{_bool(node.checkable)}" '
            f'checked="{_bool(node.checked)}" clickable="{_bool(node.clickable)}" '
            f'enabled="{_bool(node.enabled)}" focusable="{_bool(node.focusable)}" '
            f'focused="{_bool(node.focused)}" scrollable="{_bool(node.scrollable)}" '
            f'long-clickable="{_bool(node.long_clickable)}" password="{_bool(node.password)}" '
            f'selected="{_bool(node.selected)}" visible-to-user="true" '
            f'bounds="[{left},{top}][{right},{bottom}]" drawing-order="{order}" '
            f'hint="{_attr(node.hint)}" display-id="0"'
        )
        children = node.children if depth < max_depth else []
        if not children:
            lines.append(f"{'  ' * depth}<node {attrs} />")
            return
        lines.append(f"{'  ' * depth}<node {attrs}>")
        for i, child in enumerate(children):
            emit(child, i, depth + 1, i + 1)
        lines.append(f"{'  ' * depth}</node>")

    roots = [w.root for w in windows]
    if compressed:
        roots = [_replace_children(r, _compress(r.children)) for r in roots]
    for i, root in enumerate(roots):
        emit(root, i, 1, 0)
    lines.append("</hierarchy>")
    return "\n".join(lines)


def obj_info(node: UiNode) -> dict[str, Any]:
    """The ObjInfo JSON the server returns for a UiObject (uiautomator2 reads its bounds)."""
    left, top, right, bottom = node.bounds
    bounds = {"left": left, "top": top, "right": right, "bottom": bottom}
    return {
        "bounds": bounds,
        "checkable": node.checkable,
        "checked": node.checked,
        "childCount": len(node.children),
        "className": node.class_name,
        "clickable": node.clickable,
        "contentDescription": node.content_desc,
        "enabled": node.enabled,
        "focusable": node.focusable,
        "focused": node.focused,
        "longClickable": node.long_clickable,
        "packageName": node.package,
        "resourceName": node.resource_id or None,
        "scrollable": node.scrollable,
        "selected": node.selected,
        "text": node.text,
        "visibleBounds": dict(bounds),
    }


# -- selectors -------------------------------------------------------------------------
# uiautomator2's Selector mask bits (uiautomator2/_selector.py), used to know which keys
# of the dict are set (a key may be present with its default value).
MASK_BITS: dict[str, int] = {
    "text": 0x01,
    "textContains": 0x02,
    "textMatches": 0x04,
    "textStartsWith": 0x08,
    "className": 0x10,
    "classNameMatches": 0x20,
    "description": 0x40,
    "descriptionContains": 0x80,
    "descriptionMatches": 0x0100,
    "descriptionStartsWith": 0x0200,
    "checkable": 0x0400,
    "checked": 0x0800,
    "clickable": 0x1000,
    "longClickable": 0x2000,
    "scrollable": 0x4000,
    "enabled": 0x8000,
    "focusable": 0x010000,
    "focused": 0x020000,
    "selected": 0x040000,
    "packageName": 0x080000,
    "packageNameMatches": 0x100000,
    "resourceId": 0x200000,
    "resourceIdMatches": 0x400000,
    "index": 0x800000,
    "instance": 0x01000000,
}


class RpcError(Exception):
    """A JSON-RPC error as the u2 server reports it (code, Java-style message, stack)."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or message


@dataclass(frozen=True)
class _Flat:
    node: UiNode
    parent: int  # position of the parent in the flat list, -1 for a root
    index: int  # index among the parent's children


def _flatten(roots: list[UiNode]) -> list[_Flat]:
    flat: list[_Flat] = []

    def add(node: UiNode, parent: int, index: int) -> None:
        position = len(flat)
        flat.append(_Flat(node, parent, index))
        for i, child in enumerate(node.children):
            add(child, position, i)

    for i, root in enumerate(roots):
        add(root, -1, i)
    return flat


def _fullmatch(pattern: str, value: str) -> bool:
    # Java's String.matches: the whole value, no DOTALL.
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error as exc:
        raise RpcError(
            -32001, f"java.util.regex.PatternSyntaxException: {exc} near index {exc.pos}"
        ) from exc


def _fields(selector: dict[str, Any]) -> dict[str, Any]:
    mask = int(selector.get("mask", 0) or 0)
    return {k: selector[k] for k, bit in MASK_BITS.items() if mask & bit and k in selector}


def _matches(entry: _Flat, fields: dict[str, Any]) -> bool:
    node = entry.node
    for key, want in fields.items():
        if key == "instance":
            continue
        if key == "text":
            ok = node.text == want
        elif key == "textContains":
            ok = str(want) in node.text
        elif key == "textMatches":
            ok = _fullmatch(str(want), node.text)
        elif key == "textStartsWith":
            ok = node.text.startswith(str(want))
        elif key == "className":
            ok = node.class_name == want
        elif key == "classNameMatches":
            ok = _fullmatch(str(want), node.class_name)
        elif key == "description":
            ok = node.content_desc == want
        elif key == "descriptionContains":
            ok = str(want) in node.content_desc
        elif key == "descriptionMatches":
            ok = _fullmatch(str(want), node.content_desc)
        elif key == "descriptionStartsWith":
            ok = node.content_desc.startswith(str(want))
        elif key == "packageName":
            ok = node.package == want
        elif key == "packageNameMatches":
            ok = _fullmatch(str(want), node.package)
        elif key == "resourceId":
            ok = node.resource_id == want
        elif key == "resourceIdMatches":
            ok = _fullmatch(str(want), node.resource_id)
        elif key == "index":
            ok = entry.index == int(want)
        elif key == "longClickable":
            ok = node.long_clickable == bool(want)
        else:  # checkable, checked, clickable, scrollable, enabled, focusable, ...
            ok = getattr(node, key) == bool(want)
        if not ok:
            return False
    return True


def _select(flat: list[_Flat], candidates: list[int], selector: dict[str, Any]) -> list[int]:
    fields = _fields(selector)
    found = [i for i in candidates if _matches(flat[i], fields)]
    if "instance" in fields:
        instance = int(fields["instance"])
        return found[instance : instance + 1]
    return found


def _descendants(flat: list[_Flat], position: int) -> list[int]:
    # Pre-order: a node's subtree is the run of entries right after it whose parents are
    # inside the subtree.
    inside = {position}
    out: list[int] = []
    for i in range(position + 1, len(flat)):
        if flat[i].parent not in inside:
            break
        inside.add(i)
        out.append(i)
    return out


def match_selector(roots: list[UiNode], selector: dict[str, Any]) -> list[UiNode]:
    """All nodes a uiautomator2 Selector dict matches, in document order.

    `instance` picks the n-th match; `childOrSibling` chains narrow the search to the
    descendants ("child") or to the parent's subtree ("sibling") of the previous matches.
    """
    flat = _flatten(roots)
    current = _select(flat, list(range(len(flat))), selector)
    relations = list(selector.get("childOrSibling") or [])
    subs = list(selector.get("childOrSiblingSelector") or [])
    for relation, sub in zip(relations, subs, strict=False):
        scope: list[int] = []
        for position in current:
            if relation == "sibling":
                parent = flat[position].parent
                pool = _descendants(flat, parent) if parent >= 0 else []
                scope.extend(i for i in pool if i != position)
            else:
                scope.extend(_descendants(flat, position))
        current = _select(flat, sorted(set(scope)), dict(sub))
    return [flat[i].node for i in current]


def describe_selector(selector: dict[str, Any]) -> str:
    """Java's UiSelector.toString(), roughly: UiSelector[TEXT=x, INSTANCE=0]."""
    names = {
        "text": "TEXT",
        "textContains": "CONTAINS_TEXT",
        "textMatches": "TEXT_REGEX",
        "textStartsWith": "START_TEXT",
        "className": "CLASS",
        "classNameMatches": "CLASS_REGEX",
        "description": "DESCRIPTION",
        "descriptionContains": "CONTAINS_DESCRIPTION",
        "descriptionMatches": "DESCRIPTION_REGEX",
        "descriptionStartsWith": "START_DESCRIPTION",
        "packageName": "PACKAGE_NAME",
        "packageNameMatches": "PACKAGE_NAME_REGEX",
        "resourceId": "RESOURCE_ID",
        "resourceIdMatches": "RESOURCE_ID_REGEX",
        "index": "INDEX",
        "instance": "INSTANCE",
    }
    parts = [f"{names.get(k, k.upper())}={v}" for k, v in _fields(selector).items()]
    return f"UiSelector[{', '.join(parts)}]"


# -- the screen ------------------------------------------------------------------------
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
                self.tap(x, y, long_press=held_ms >= _LONG_PRESS_MS)

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


# -- the JSON-RPC server ---------------------------------------------------------------
Method = Callable[[list[Any]], Any]


class U2Server:
    """The HTTP JSON-RPC server uiautomator2 talks to, answering from a DeviceScreen."""

    def __init__(self, screen: DeviceScreen) -> None:
        self.screen = screen
        self._closing = threading.Event()
        self._objects: dict[str, _ObjectRef] = {}  # UiObjects handed out by childBy*, getParent
        self._next_object = 0
        self._methods: dict[str, Method] = self._method_table()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/ping":
                    self._reply(200, b"pong", "text/plain")
                else:
                    self._reply(404, b"Not Found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self.path.startswith("/jsonrpc/0"):
                    self._reply(404, b"Not Found", "text/plain")
                    return
                reply = server.handle(body)
                self._reply(200, json.dumps(reply).encode(), "application/json")

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("u2 server: " + format, *args)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="u2-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing.set()  # ends long waits (waitForExists) of requests in flight
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # dispatch
    def handle(self, body: bytes) -> dict[str, Any]:
        request_id: Any = None
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise RpcError(-32600, "Invalid Request")
            request_id = request.get("id")
            method = str(request.get("method", ""))
            params = request.get("params")
            args = list(params) if isinstance(params, list) else []
            handler = self._methods.get(method)
            if handler is None:
                raise RpcError(-32601, f"Method not found: {method}")
            result = handler(args)
            return {"jsonrpc": "2.0", "id": request_id, "result": result}
        except RpcError as exc:
            error = {"code": exc.code, "message": exc.message, "data": exc.data}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            message = f"java.lang.IllegalArgumentException: {type(exc).__name__}: {exc}"
            error = {"code": -32602, "message": message, "data": message}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        except Exception as exc:
            # Answer, never drop the connection: uiautomator2 treats a dropped connection as
            # a dead server and restarts it, which would hide the error in a loop.
            log.exception("u2 server: %s failed", body[:200])
            message = f"java.lang.RuntimeException: {type(exc).__name__}: {exc}"
            error = {"code": -32001, "message": message, "data": message}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}

    def call(self, method: str, *params: Any) -> Any:
        """Call a method in-process (tests, debugging); raises RpcError."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        reply = self.handle(body.encode())
        if "error" in reply:
            raise RpcError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def _method_table(self) -> dict[str, Method]:
        none = _returns(None)
        return {
            "deviceInfo": self._device_info,
            "device_info": self._device_info,
            "dumpWindowHierarchy": self._dump,
            "click": self._click,
            "longClick": self._long_click,
            "injectInputEvent": self._inject,
            "swipe": self._swipe,
            "swipePoints": self._swipe_points,
            "drag": self._drag,
            "dragTo": self._drag_to,
            "gesture": self._gesture,
            "pinchIn": self._pinch,
            "pinchOut": self._pinch,
            "waitForExists": lambda a: self._wait(a, True),
            "waitUntilGone": lambda a: self._wait(a, False),
            "exist": lambda a: bool(self._find(a)),
            "count": lambda a: len(self._find(a)),
            "objInfo": lambda a: obj_info(self._one(a)),
            "objInfoOfAllInstances": lambda a: [obj_info(n) for n in self._find(a)],
            "getText": lambda a: self._one(a).text,
            "setText": self._set_text,
            "clearTextField": self._clear_text,
            "clearInputText": self._clear_focused,
            "childByText": lambda a: self._child_by(a, "text"),
            "childByDescription": lambda a: self._child_by(a, "description"),
            "childByInstance": self._child_by_instance,
            "getChild": self._get_child,
            "getFromParent": self._get_from_parent,
            "getParent": self._get_parent,
            "pressKey": lambda a: self.screen.press_key(str(a[0])),
            "pressKeyCode": lambda a: self.screen.press_key(int(a[0])),
            "takeScreenshot": self._screenshot,
            "getLastToast": lambda a: self.screen.last_toast,
            "clearLastToast": self._clear_toast,
            "makeToast": self._make_toast,
            "getClipboard": lambda a: self.screen.clipboard,
            "setClipboard": self._set_clipboard,
            "pasteClipboard": lambda a: self.screen.type_text(self.screen.clipboard),
            "wakeUp": self._wake_up,
            "sleep": self._sleep,
            "isScreenOn": lambda a: self.screen.device.screen_on,
            "setOrientation": self._set_orientation,
            "freezeRotation": self._freeze_rotation,
            "getLastTraversedText": none,
            "clearLastTraversedText": none,
            "openNotification": _returns(True),
            "openQuickSettings": _returns(True),
            "scrollForward": lambda a: self._scroll_once(a, 1, 1),
            "scrollBackward": lambda a: self._scroll_once(a, -1, 1),
            "scrollToBeginning": lambda a: self._scroll_all(a, -1, 1),
            "scrollToEnd": lambda a: self._scroll_all(a, 1, 1),
            "scrollTo": self._scroll_to,
            "flingForward": lambda a: self._scroll_once(a, 1, _FLING),
            "flingBackward": lambda a: self._scroll_once(a, -1, _FLING),
            "flingToBeginning": lambda a: self._scroll_all(a, -1, _FLING),
            "flingToEnd": lambda a: self._scroll_all(a, 1, _FLING),
        }

    # methods
    def _device_info(self, args: list[Any]) -> dict[str, Any]:
        device = self.screen.device
        width, height = self.screen.size()
        density = device.density_override or device.PHYSICAL_DENSITY
        window = self.screen.active_window()
        rotation = self.screen.rotation()
        return {
            "currentPackageName": window.package,
            "displayHeight": height,
            "displayRotation": rotation,
            "displaySizeDpX": round(width * 160 / density),
            "displaySizeDpY": round(height * 160 / density),
            "displayWidth": width,
            "productName": device.props.get("ro.product.name", ""),
            "screenOn": device.screen_on,
            "sdkInt": int(device.props.get("ro.build.version.sdk", "34")),
            "naturalOrientation": rotation % 2 == 0,
        }

    def _dump(self, args: list[Any]) -> str:
        compressed = bool(args[0]) if args else False
        max_depth = int(args[1]) if len(args) > 1 and args[1] is not None else 50
        return self.screen.hierarchy_xml(compressed, max_depth)

    def _pause(self, seconds: float) -> None:
        """A gesture takes its time (UiAutomator injects one step every 5 ms)."""
        self._closing.wait(max(0.0, seconds))

    def _click(self, args: list[Any]) -> bool:
        if args and isinstance(args[0], (dict, str)):  # click(selector): the object's centre
            node = self._one(args)
            left, top, right, bottom = node.bounds
            return self.screen.tap((left + right) / 2, (top + bottom) / 2)
        x, y = float(args[0]), float(args[1])
        if len(args) > 2 and args[2] is not None:  # click(x, y, ms): a press held that long
            held_ms = float(args[2])
            self._pause(held_ms / 1000.0)
            self.screen.tap(x, y, long_press=held_ms >= _LONG_PRESS_MS)
            return True
        self.screen.tap(x, y)
        return True

    def _long_click(self, args: list[Any]) -> bool:
        if args and isinstance(args[0], (dict, str)):
            node = self._one(args)
            left, top, right, bottom = node.bounds
            x, y = (left + right) / 2, (top + bottom) / 2
        else:
            x, y = float(args[0]), float(args[1])
        self._pause(_LONG_PRESS_MS / 1000.0)
        return self.screen.tap(x, y, long_press=True)

    def _inject(self, args: list[Any]) -> bool:
        # injectInputEvent(action, x, y, metaState)
        self.screen.touch(int(args[0]), float(args[1]), float(args[2]))
        return True

    def _swipe(self, args: list[Any]) -> bool:
        # swipe(fx, fy, tx, ty, steps)
        fx, fy, tx, ty = (float(v) for v in args[:4])
        steps = int(args[4]) if len(args) > 4 else 10
        self._pause(max(1, steps) * _STEP_S)
        self.screen.swipe(fx, fy, tx, ty)
        return True

    def _swipe_points(self, args: list[Any]) -> bool:
        # swipePoints([x0, y0, x1, y1, ...], steps): `steps` for each segment
        flat = [float(v) for v in args[0]]
        steps = int(args[1]) if len(args) > 1 else 10
        points = list(zip(flat[0::2], flat[1::2], strict=False))
        if len(points) < 2:
            return False
        self._pause((len(points) - 1) * max(1, steps) * _STEP_S)
        self.screen.swipe(points[0][0], points[0][1], points[-1][0], points[-1][1])
        return True

    def _drag(self, args: list[Any]) -> bool:
        # drag(sx, sy, ex, ey, steps)
        sx, sy, ex, ey = (float(v) for v in args[:4])
        steps = int(args[4]) if len(args) > 4 else 10
        self._pause(max(1, steps) * _STEP_S)
        self.screen.swipe(sx, sy, ex, ey)
        return True

    def _drag_to(self, args: list[Any]) -> bool:
        # dragTo(selector, x, y, steps) or dragTo(selector, destination selector, steps)
        node = self._one(args)
        if len(args) > 1 and isinstance(args[1], (dict, str)):
            target = self._one(args[1:])
            left, top, right, bottom = target.bounds
            ex, ey = (left + right) / 2, (top + bottom) / 2
            steps = int(args[2]) if len(args) > 2 else 10
        else:
            ex, ey = float(args[1]), float(args[2])
            steps = int(args[3]) if len(args) > 3 else 10
        left, top, right, bottom = node.bounds
        self._pause(max(1, steps) * _STEP_S)
        self.screen.swipe((left + right) / 2, (top + bottom) / 2, ex, ey)
        return True

    def _gesture(self, args: list[Any]) -> bool:
        # gesture(selector, start1, start2, end1, end2, steps): two fingers on the object
        self._one(args)
        for point in args[1:5]:
            if not isinstance(point, dict) or "x" not in point or "y" not in point:
                raise ValueError(f"a point is {{'x': X, 'y': Y}}, not {point!r}")
        steps = int(args[5]) if len(args) > 5 else 100
        self._pause(max(1, steps) * _STEP_S)
        return True

    def _pinch(self, args: list[Any]) -> bool:
        # pinchIn/pinchOut(selector, percent, steps)
        self._one(args)
        percent = int(args[1]) if len(args) > 1 else 100
        if not 0 <= percent <= 100:
            raise RpcError(
                -32602, "java.lang.IllegalArgumentException: Percent must be between 0 and 100"
            )
        steps = int(args[2]) if len(args) > 2 else 50
        self._pause(max(1, steps) * _STEP_S)
        return True

    def _wait(self, args: list[Any], exists: bool) -> bool:
        timeout_s = (int(args[1]) if len(args) > 1 else 0) / 1000.0
        deadline = time.monotonic() + timeout_s
        while True:
            if bool(self._find(args)) == exists:
                return True
            if time.monotonic() >= deadline or self._closing.wait(_POLL_S):
                return False

    # finding objects: a Selector dict, or the id of a UiObject the server handed out
    def _find(self, args: list[Any]) -> list[UiNode]:
        if args and isinstance(args[0], str):
            ref = self._objects.get(args[0])
            if ref is None:
                raise RpcError(
                    -32002,
                    f"androidx.test.uiautomator.UiObjectNotFoundException: no object {args[0]}",
                )
            return self._resolve(ref)
        return self.screen.find(_selector(args))

    def _resolve(self, ref: _ObjectRef) -> list[UiNode]:
        roots = [self.screen.active_window().root]
        flat = _flatten(roots)
        where = {id(entry.node): i for i, entry in enumerate(flat)}
        current = [where[id(n)] for n in match_selector(roots, ref.selector)]
        for step, sub in ref.steps:
            if not current:
                break
            first = current[0]
            parent = flat[first].parent
            if step == "up":
                current = [parent] if parent >= 0 else []
            elif step == "child":
                current = _select(flat, _descendants(flat, first), sub)
            else:  # sibling: the parent's other descendants
                pool = _descendants(flat, parent) if parent >= 0 else []
                current = _select(flat, [i for i in pool if i != first], sub)
        return [flat[i].node for i in current]

    def _one(self, args: list[Any]) -> UiNode:
        found = self._find(args)
        if not found:
            what = args[0] if args and isinstance(args[0], str) else None
            described = what or describe_selector(_selector(args))
            raise RpcError(
                -32002, f"androidx.test.uiautomator.UiObjectNotFoundException: {described}"
            )
        return found[0]

    def _selector_of(self, value: Any) -> _ObjectRef:
        if isinstance(value, str):
            ref = self._objects.get(value)
            if ref is None:
                raise RpcError(
                    -32002,
                    f"androidx.test.uiautomator.UiObjectNotFoundException: no object {value}",
                )
            return ref
        return _ObjectRef(_selector([value]))

    def _keep(self, ref: _ObjectRef) -> str:
        with self.screen.lock:
            self._next_object += 1
            name = f"{uuid.UUID(int=self._next_object)}"
            self._objects[name] = ref
            return name

    def _child_by(self, args: list[Any], by: str) -> str:
        # childByText(collection, child pattern, text[, allowScrollSearch]), likewise
        # childByDescription: UiCollection.getChildByText, or UiScrollable's when the
        # collection scrolls (which scrolls the text into view first).
        collection = _selector(args)
        pattern = _selector(args[1:])
        wanted = str(args[2])
        scrollable = any(n.scrollable for n in self.screen.find(collection))
        allow_scroll = bool(args[3]) if len(args) > 3 else scrollable
        if allow_scroll and scrollable:
            self._scroll_into_view(collection, _field_selector(by, wanted), True)
        rows = match_selector(
            [self.screen.active_window().root], _chain(collection, "child", pattern)
        )
        attribute = "text" if by == "text" else "content_desc"
        for instance, row in enumerate(rows):
            inside = [n for n in row.walk()]
            if any(getattr(n, attribute) == wanted for n in inside):
                return self._keep(_ObjectRef(_chain(collection, "child", pattern, instance)))
        raise RpcError(
            -32002,
            f'androidx.test.uiautomator.UiObjectNotFoundException: for {by}= "{wanted}"',
        )

    def _child_by_instance(self, args: list[Any]) -> str:
        # childByInstance(collection, child pattern, instance)
        collection, pattern = _selector(args), _selector(args[1:])
        ref = _ObjectRef(_chain(collection, "child", pattern, int(args[2])))
        if not self._resolve(ref):
            raise RpcError(
                -32002,
                "androidx.test.uiautomator.UiObjectNotFoundException: "
                f"{describe_selector(pattern)}",
            )
        return self._keep(ref)

    def _get_child(self, args: list[Any]) -> str:
        # getChild(object, selector): the object's descendant the selector matches
        base = self._selector_of(args[0])
        return self._keep(base.then("child", _selector(args[1:])))

    def _get_from_parent(self, args: list[Any]) -> str:
        # getFromParent(object, selector): a sibling (in the parent's subtree) it matches
        base = self._selector_of(args[0])
        return self._keep(base.then("sibling", _selector(args[1:])))

    def _get_parent(self, args: list[Any]) -> str:
        ref = self._selector_of(args[0]).then("up", {})
        if not self._resolve(ref):
            raise RpcError(-32002, "androidx.test.uiautomator.UiObjectNotFoundException: no parent")
        return self._keep(ref)

    # scrolling (UiScrollable: forward/backward return False once the end is reached)
    def _scrollable(self, args: list[Any]) -> UiNode:
        return self._one(args)

    def _scroll_once(self, args: list[Any], direction: int, fling: int) -> bool:
        vertical = bool(args[1]) if len(args) > 1 else True
        steps = int(args[2]) if len(args) > 2 and fling == 1 else _FLING_STEPS
        return self._scroll_step(args, vertical, direction, fling, steps)

    def _scroll_step(
        self, args: list[Any], vertical: bool, direction: int, fling: int, steps: int
    ) -> bool:
        node = self._scrollable(args)
        left, top, right, bottom = node.bounds
        extent = (bottom - top) if vertical else (right - left)
        distance = int(extent * (1 - 2 * _DEAD_ZONE)) * fling
        self._pause(max(1, steps) * _STEP_S)
        moved, at_end = self.screen.scroll(node, vertical, direction * distance)
        return moved and not at_end

    def _scroll_all(self, args: list[Any], direction: int, fling: int) -> bool:
        # scrollToEnd(selector, vertical, maxSwipes, steps): swipe until the end (or
        # maxSwipes); UiScrollable returns true either way.
        vertical = bool(args[1]) if len(args) > 1 else True
        max_swipes = int(args[2]) if len(args) > 2 else 500
        steps = int(args[3]) if len(args) > 3 and fling == 1 else _FLING_STEPS
        for _ in range(max(0, max_swipes)):
            if not self._scroll_step(args, vertical, direction, fling, steps):
                break
        return True

    def _scroll_to(self, args: list[Any]) -> bool:
        # scrollTo(selector, target selector, vertical): UiScrollable.scrollIntoView
        vertical = bool(args[2]) if len(args) > 2 else True
        return self._scroll_into_view(_selector(args), _selector(args[1:]), vertical)

    def _scroll_into_view(
        self, scrollable: dict[str, Any], target: dict[str, Any], vertical: bool
    ) -> bool:
        inside = _chain(scrollable, "child", target)

        def visible() -> bool:
            return bool(match_selector([self.screen.active_window().root], inside))

        if visible():
            return True
        self._scroll_all([scrollable, vertical, _MAX_SEARCH_SWIPES, 5], -1, 1)
        for _ in range(_MAX_SEARCH_SWIPES):
            if visible():
                return True
            if not self._scroll_step([scrollable], vertical, 1, 1, 5):
                break
        return visible()

    def _set_text(self, args: list[Any]) -> bool:
        return self.screen.set_text(self._one(args), str(args[1]) if len(args) > 1 else "")

    def _clear_text(self, args: list[Any]) -> None:
        self.screen.set_text(self._one(args), "")

    def _clear_focused(self, args: list[Any]) -> None:
        node = self.screen.focused_node()
        if node is not None:
            self.screen.set_text(node, "")

    def _screenshot(self, args: list[Any]) -> str:
        # takeScreenshot(scale, quality): a JPEG of the display, as the server sends it
        scale = float(args[0]) if args and args[0] else 1.0
        quality = int(args[1]) if len(args) > 1 and args[1] else 100
        frame = render_screen(self.screen.device)
        image = Image.frombytes("RGBA", (frame.width, frame.height), frame.rgba).convert("RGB")
        if 0 < scale < 1:
            size = (max(1, int(frame.width * scale)), max(1, int(frame.height * scale)))
            image = image.resize(size)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=max(1, min(100, quality)))
        return base64.b64encode(out.getvalue()).decode()

    def _wake_up(self, args: list[Any]) -> bool:
        self.screen.device.set_screen_on(True)
        return True

    def _sleep(self, args: list[Any]) -> bool:
        self.screen.device.set_screen_on(False)
        return True

    def _set_orientation(self, args: list[Any]) -> bool:
        # setOrientation("natural"|"left"|"right"|"upsidedown"): UiDevice.setOrientationX,
        # which also freezes rotation there.
        name = str(args[0]).lower() if args else ""
        rotation = _ORIENTATIONS.get(name)
        if rotation is None:
            raise RpcError(
                -32602, f"java.lang.IllegalArgumentException: Invalid orientation: {name}"
            )
        self.screen.device.set_rotation(rotation)
        return True

    def _freeze_rotation(self, args: list[Any]) -> bool:
        freeze = bool(args[0]) if args else True
        device = self.screen.device
        device.set_rotation(device.rotation() if freeze else None)
        return True

    def _clear_toast(self, args: list[Any]) -> bool:
        with self.screen.lock:
            self.screen.last_toast = None
        return True

    def _make_toast(self, args: list[Any]) -> bool:
        seconds = float(args[1]) / 1000.0 if len(args) > 1 else 1.0
        self.screen.show_toast(str(args[0]), seconds)
        return True

    def _set_clipboard(self, args: list[Any]) -> None:
        # setClipboard(label, text)
        with self.screen.lock:
            self.screen.clipboard = str(args[1] if len(args) > 1 else args[0])


_STEP_S = 0.005  # UiAutomator throttles each injected step to 5 ms
_LONG_PRESS_MS = 400.0  # ViewConfiguration's long-press timeout on Android 12+
_TOUCH_SLOP = 21  # 8 dp at 416 dpi
_DEAD_ZONE = 0.1  # UiScrollable swipes inside the middle 80 % of the object
_FLING = 3  # a fling carries the content about three swipes' worth
_FLING_STEPS = 5
_MAX_SEARCH_SWIPES = 30
_ORIENTATIONS = {"natural": 0, "n": 0, "left": 1, "l": 1, "upsidedown": 2, "u": 2, "right": 3}
_ORIENTATIONS["r"] = 3


@dataclass(frozen=True)
class _ObjectRef:
    """A UiObject the server handed out by id: found again on every use (as UiObject does)
    from its selector, then `steps` from the first match: ("up", {}) to the parent,
    ("child", selector) into its subtree, ("sibling", selector) into its parent's."""

    selector: dict[str, Any]
    steps: tuple[tuple[str, dict[str, Any]], ...] = ()

    def then(self, step: str, selector: dict[str, Any]) -> _ObjectRef:
        return _ObjectRef(self.selector, (*self.steps, (step, selector)))


def _field_selector(by: str, value: str) -> dict[str, Any]:
    """A one-field selector dict, with its mask, as uiautomator2's Selector builds it."""
    return {by: value, "mask": MASK_BITS[by], "childOrSibling": [], "childOrSiblingSelector": []}


def _chain(
    base: dict[str, Any], relation: str, sub: dict[str, Any], instance: int | None = None
) -> dict[str, Any]:
    """`base` narrowed to its children (or siblings) matching `sub` (its n-th match)."""
    sub = dict(sub)
    if instance is not None:
        sub["instance"] = instance
        sub["mask"] = int(sub.get("mask", 0) or 0) | MASK_BITS["instance"]
    out = dict(base)
    out["childOrSibling"] = [*(base.get("childOrSibling") or []), relation]
    out["childOrSiblingSelector"] = [*(base.get("childOrSiblingSelector") or []), sub]
    return out


def _returns(value: Any) -> Method:
    def method(args: list[Any]) -> Any:
        return value

    return method


def _selector(args: list[Any]) -> dict[str, Any]:
    if not args or not isinstance(args[0], dict):
        raise RpcError(-32602, "java.lang.IllegalArgumentException: a UiSelector is required")
    return dict(args[0])


# -- app_process -----------------------------------------------------------------------
def _main_class(args: list[str]) -> tuple[str, list[str]]:
    """app_process [vm-options] cmd-dir [options] start-class-name [main-options]."""
    rest = list(args)
    while rest and rest[0].startswith("-"):  # vm options
        rest.pop(0)
    if rest:
        rest.pop(0)  # cmd-dir (u2 passes "/")
    while rest and rest[0].startswith("--"):  # --nice-name=..., --application
        rest.pop(0)
    if not rest:
        return "", []
    return rest[0], rest[1:]


def _server_port(main_args: list[str]) -> int:
    for i, arg in enumerate(main_args):
        if arg in ("-p", "--port") and i + 1 < len(main_args) and main_args[i + 1].isdigit():
            return int(main_args[i + 1])
    return DEFAULT_PORT


def app_process(ctx: CommandContext) -> int:
    """`app_process`: only uiautomator2's server class can be started on this device."""
    main, main_args = _main_class(ctx.argv[1:])
    if not main:
        ctx.error("Usage: app_process [java-options] cmd-dir start-class-name [options]\n")
        return 1
    classpath = [p for p in ctx.env.get("CLASSPATH", "").split(":") if p]
    if main != U2_MAIN_CLASS or not any(
        posixpath.basename(p) == "u2.jar" and ctx.fs.is_file(p) for p in classpath
    ):
        ctx.error(
            f'Exception in thread "main" java.lang.ClassNotFoundException: {main}\n'
            f"\tat java.lang.Class.classForName(Native Method)\n"
        )
        return 1
    port = _server_port(main_args)
    screen = screen_of(ctx.device)
    server = U2Server(screen)
    with screen.lock:
        if port in screen.servers:
            server.close()
            ctx.write("[server] INFO: [UiAutomator2Server] Starting Server\n")
            ctx.error(
                "java.net.BindException: Address already in use\n"
                "\tat fi.iki.elonen.NanoHTTPD.start(NanoHTTPD.java:2204)\n"
            )
            return 1
        screen.servers[port] = server
    server.start()
    ctx.device.expose_port(port, server.port)
    try:
        ctx.write("[server] INFO: [UiAutomator2Server] Starting Server\n")
        ctx.cancelled.wait()  # until the stream is closed or the process killed
        return 0
    finally:
        with screen.lock:
            if screen.servers.get(port) is server:
                del screen.servers[port]
                ctx.device.unexpose_port(port)
        server.close()


def install_uiautomator(dev: VirtualS24) -> None:
    """Let `uiautomator2.connect(dev.serial)` work: register `app_process` on the device."""
    screen_of(dev)
    dev.add_command("app_process", app_process)
