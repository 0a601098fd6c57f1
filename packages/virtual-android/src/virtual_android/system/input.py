"""The input manager: `input` injects key, touch and text events; each is recorded (for
tests, `VirtualS24.input_events`) and handed to the power manager and to whoever listens (the
apps' screen)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .service import SystemService

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler
    from .power import PowerService

__all__ = ["KEYCODES", "InputEvent", "InputService"]


@dataclass(frozen=True)
class InputEvent:
    """One `input ...` command: kind is keyevent, tap, swipe, draganddrop, text or roll."""

    kind: str
    args: tuple[float | int | str, ...]
    source: str = ""
    longpress: bool = False
    timestamp: float = 0.0


InputListener = Callable[[InputEvent], None]


KEYCODES = {
    "HOME": 3,
    "BACK": 4,
    "CALL": 5,
    "ENDCALL": 6,
    "DPAD_UP": 19,
    "DPAD_DOWN": 20,
    "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22,
    "DPAD_CENTER": 23,
    "VOLUME_UP": 24,
    "VOLUME_DOWN": 25,
    "POWER": 26,
    "CAMERA": 27,
    "CLEAR": 28,
    "TAB": 61,
    "SPACE": 62,
    "ENTER": 66,
    "DEL": 67,
    "MENU": 82,
    "SEARCH": 84,
    "MEDIA_PLAY_PAUSE": 85,
    "PAGE_UP": 92,
    "PAGE_DOWN": 93,
    "ESCAPE": 111,
    "FORWARD_DEL": 112,
    "MOVE_HOME": 122,
    "MOVE_END": 123,
    "VOLUME_MUTE": 164,
    "APP_SWITCH": 187,
    "WAKEUP": 224,
    "SLEEP": 223,
}


MOTION_ACTIONS = {"DOWN": 0, "UP": 1, "MOVE": 2, "CANCEL": 3}  # MotionEvent.ACTION_*


class InputService(SystemService):
    name = "input"
    tool = "input"

    def __init__(self, power: PowerService) -> None:
        self._power = power
        self._lock = threading.Lock()
        self._events: list[InputEvent] = []
        self._listeners: list[InputListener] = []

    @property
    def events(self) -> list[InputEvent]:
        """Events recorded from `input keyevent|tap|swipe|text`, oldest first."""
        with self._lock:
            return list(self._events)

    def record(
        self, kind: str, args: tuple[float | int | str, ...], source: str, longpress: bool = False
    ) -> InputEvent:
        event = InputEvent(kind, args, source, longpress, time.time())
        with self._lock:
            self._events.append(event)
        return event

    def on_event(self, listener: InputListener) -> None:
        """``listener(event)`` after each event `input` injects (the screen reacts)."""
        with self._lock:
            self._listeners.append(listener)

    def inject(
        self, kind: str, args: tuple[float | int | str, ...], source: str, longpress: bool = False
    ) -> None:
        """What `input` does with one event: record it, let the power keys reach the power
        manager, then every listener."""
        event = self.record(kind, args, source, longpress)
        if kind == "keyevent":
            self._power.press_power_key(int(args[0]))
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)

    def commands(self) -> dict[str, CommandHandler]:
        return {"input": self.input}

    def input(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        sources = {
            "touchscreen",
            "keyboard",
            "mouse",
            "touchpad",
            "trackball",
            "stylus",
            "dpad",
            "gamepad",
            "joystick",
        }
        source = ""
        if args and args[0] in sources:
            source = args[0]
            args = args[1:]
        if args[:1] == ["-d"] and len(args) > 1:
            args = args[2:]
        if not args:
            ctx.error("Usage: input [<source>] [-d DISPLAY_ID] <command> [<arg>...]\n")
            return 1
        verb, rest = args[0], args[1:]
        try:
            if verb == "keyevent":
                longpress = "--longpress" in rest
                codes = [r for r in rest if not r.startswith("--")]
                if not codes:
                    raise ValueError("keyevent needs a key code")
                for code in codes:
                    name = code.upper().removeprefix("KEYCODE_")
                    if code.isdigit():
                        value = int(code)
                    elif name in KEYCODES:
                        value = KEYCODES[name]
                    else:
                        raise ValueError(f"Unknown keycode: {code}")
                    self.inject("keyevent", (value,), source, longpress)
                return 0
            if verb in ("tap", "press"):
                x, y = (float(v) for v in rest[:2])
                self.inject("tap", (x, y), source)
                return 0
            if verb in ("swipe", "draganddrop"):
                numbers = [float(v) for v in rest[:5]]
                if len(numbers) < 4:
                    raise ValueError(f"{verb} needs 4 coordinates")
                # The finger moves for the duration (InputShellCommand's default: 300 ms); a drag
                # first holds for the long-press timeout (400 ms) to pick the item up.
                duration_ms = numbers[4] if len(numbers) > 4 and numbers[4] >= 0 else 300.0
                if verb == "draganddrop":
                    duration_ms += 400.0
                ctx.sleep(duration_ms / 1000.0)
                self.inject(verb, (*numbers[:4], duration_ms), source)
                return 0
            if verb == "text":
                if not rest:
                    raise ValueError("text needs a string")
                text = " ".join(rest).replace("%s", " ")
                self.inject("text", (text,), source)
                return 0
            if verb == "motionevent":
                # input motionevent DOWN|UP|MOVE|CANCEL X Y (Android 11+)
                if len(rest) < 3 or rest[0].upper() not in MOTION_ACTIONS:
                    raise ValueError("motionevent needs DOWN|UP|MOVE|CANCEL and x y")
                x, y = float(rest[1]), float(rest[2])
                self.inject("motionevent", (MOTION_ACTIONS[rest[0].upper()], x, y), source)
                return 0
            if verb == "roll":
                self.inject("roll", tuple(float(v) for v in rest[:2]), source)
                return 0
        except ValueError as exc:
            ctx.error(f"Error: {exc}\n")
            return 1
        ctx.error(f"Error: Unknown command: {verb}\n")
        return 1
