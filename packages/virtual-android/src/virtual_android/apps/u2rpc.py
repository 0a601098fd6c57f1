"""The HTTP JSON-RPC server uiautomator2 talks to (`GET /ping`, `POST /jsonrpc/0`), answering
from a DeviceScreen as the real on-device server answers from UiAutomator.

Gestures take as long as UiAutomator takes to inject them (5 ms a step); swipes and
UiScrollable's calls scroll the containers the apps mark. Errors use the server's shapes,
so uiautomator2 maps `UiObjectNotFoundException` to `UiObjectNotFoundError`.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..errors import VirtualAndroidError
from .hierarchy import obj_info
from .screen import LONG_PRESS_MS, DeviceScreen, render_screen
from .selector import (
    ObjectRef,
    SelectorError,
    chain,
    describe_selector,
    field_selector,
    match_selector,
    resolve,
)
from .ui import UiNode

log = logging.getLogger(__name__)

__all__ = ["RpcError", "U2Server"]

_POLL_S = 0.05
_STEP_S = 0.005  # UiAutomator throttles each injected step to 5 ms
_DEAD_ZONE = 0.1  # UiScrollable swipes inside the middle 80 % of the object
_FLING = 3  # a fling carries the content about three swipes' worth
_FLING_STEPS = 5
_MAX_SEARCH_SWIPES = 30
_ORIENTATIONS = {"natural": 0, "n": 0, "left": 1, "l": 1, "upsidedown": 2, "u": 2, "right": 3}
_ORIENTATIONS["r"] = 3


class RpcError(VirtualAndroidError):
    """A JSON-RPC error as the u2 server reports it (code, Java-style message, stack)."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or message


Method = Callable[[list[Any]], Any]


class U2Server:
    """The HTTP JSON-RPC server uiautomator2 talks to, answering from a DeviceScreen."""

    def __init__(self, screen: DeviceScreen) -> None:
        self.screen = screen
        self._closing = threading.Event()
        self._objects: dict[str, ObjectRef] = {}  # UiObjects handed out by childBy*, getParent
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
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The client went away first (a reboot, a disconnect): as a phone's
                    # server, say nothing; socketserver would print a traceback.
                    self.close_connection = True

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
        except SelectorError as exc:  # an invalid regular expression, say
            error = {"code": -32001, "message": str(exc), "data": str(exc)}
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
            # drag(sx, sy, ex, ey, steps): on this screen a drag moves what a swipe moves
            "drag": self._swipe,
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
            self.screen.tap(x, y, long_press=held_ms >= LONG_PRESS_MS)
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
        self._pause(LONG_PRESS_MS / 1000.0)
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

    def _resolve(self, ref: ObjectRef) -> list[UiNode]:
        return resolve([self.screen.active_window().root], ref)

    def _one(self, args: list[Any]) -> UiNode:
        found = self._find(args)
        if not found:
            what = args[0] if args and isinstance(args[0], str) else None
            described = what or describe_selector(_selector(args))
            raise RpcError(
                -32002, f"androidx.test.uiautomator.UiObjectNotFoundException: {described}"
            )
        return found[0]

    def _selector_of(self, value: Any) -> ObjectRef:
        if isinstance(value, str):
            ref = self._objects.get(value)
            if ref is None:
                raise RpcError(
                    -32002,
                    f"androidx.test.uiautomator.UiObjectNotFoundException: no object {value}",
                )
            return ref
        return ObjectRef(_selector([value]))

    def _keep(self, ref: ObjectRef) -> str:
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
            self._scroll_into_view(collection, field_selector(by, wanted), True)
        rows = match_selector(
            [self.screen.active_window().root], chain(collection, "child", pattern)
        )
        attribute = "text" if by == "text" else "content_desc"
        for instance, row in enumerate(rows):
            inside = [n for n in row.walk()]
            if any(getattr(n, attribute) == wanted for n in inside):
                return self._keep(ObjectRef(chain(collection, "child", pattern, instance)))
        raise RpcError(
            -32002,
            f'androidx.test.uiautomator.UiObjectNotFoundException: for {by}= "{wanted}"',
        )

    def _child_by_instance(self, args: list[Any]) -> str:
        # childByInstance(collection, child pattern, instance)
        collection, pattern = _selector(args), _selector(args[1:])
        ref = ObjectRef(chain(collection, "child", pattern, int(args[2])))
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
        inside = chain(scrollable, "child", target)

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


def _returns(value: Any) -> Method:
    def method(args: list[Any]) -> Any:
        return value

    return method


def _selector(args: list[Any]) -> dict[str, Any]:
    if not args or not isinstance(args[0], dict):
        raise RpcError(-32602, "java.lang.IllegalArgumentException: a UiSelector is required")
    return dict(args[0])
