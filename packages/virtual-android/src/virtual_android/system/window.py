"""The window manager: the display's size, density and rotation (`wm`), and `dumpsys window`
with the focused window the activity manager puts in front."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Protocol

from .service import SystemService

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler
    from .power import PowerService
    from .settings import SettingsService

__all__ = ["STATUS_BAR_HEIGHT", "Focus", "WindowService", "window_token"]

STATUS_BAR_HEIGHT = 110  # px at 416 dpi; apps draw below it
_ROTATION_NAMES = ("ROTATION_0", "ROTATION_90", "ROTATION_180", "ROTATION_270")


class Focus(Protocol):
    """The focused window: (package, full activity class, short activity, pid)."""

    def focus(self) -> tuple[str, str, str, int]: ...


def _wm_value(value: int | tuple[int, ...]) -> str:
    """How `wm` prints a size (WxH) or a density."""
    return "x".join(str(v) for v in (value if isinstance(value, tuple) else (value,)))


def window_token(package: str) -> str:
    """The short hash Android prints for a window and its activity record."""
    return hashlib.md5(package.encode()).hexdigest()[:7]


class WindowService(SystemService):
    name = "window"
    tool = "wm"
    PHYSICAL_SIZE = (1080, 2340)
    PHYSICAL_DENSITY = 416

    def __init__(self, settings: SettingsService, power: PowerService, focus: Focus) -> None:
        self._system = settings.tables["system"]
        self._power = power
        self._focus = focus
        self.size_override: tuple[int, int] | None = None
        self.density_override: int | None = None

    # -- state ---------------------------------------------------------------------
    def rotation(self) -> int:
        """The display's rotation, 0-3 (Surface.ROTATION_0..270).

        As on a phone, `user_rotation` applies only while auto-rotate is off
        (`accelerometer_rotation` 0); with it on the sensor decides, and this phone lies
        upright, so the display stays at 0.
        """
        if self._system.get("accelerometer_rotation", "1") != "0":
            return 0
        value = self._system.get("user_rotation", "0") or "0"
        return int(value) % 4 if value.isdigit() else 0

    def set_rotation(self, rotation: int | None) -> None:
        """Lock the display at `rotation` (0-3), or let the sensor decide again (None)."""
        if rotation is None:
            self._system["accelerometer_rotation"] = "1"
            return
        self._system["accelerometer_rotation"] = "0"
        self._system["user_rotation"] = str(int(rotation) % 4)

    def rotation_locked(self) -> bool:
        return self._system.get("accelerometer_rotation", "1") == "0"

    def panel_size(self) -> tuple[int, int]:
        """The panel's size (what `wm size` set, unrotated)."""
        return self.size_override or self.PHYSICAL_SIZE

    def display_size(self) -> tuple[int, int]:
        """The logical display size in the current rotation (width and height swap at 90/270)."""
        width, height = self.panel_size()
        return (height, width) if self.rotation() % 2 else (width, height)

    def density(self) -> int:
        return self.density_override or self.PHYSICAL_DENSITY

    # -- wm ------------------------------------------------------------------------
    def commands(self) -> dict[str, CommandHandler]:
        return {"wm": self.wm}

    def wm(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        if args[:1] == ["user-rotation"]:
            return self._user_rotation(ctx, args[1:])
        if not args or args[0] not in ("size", "density"):
            ctx.error("Unknown command\n" if args else "wm: missing command\n")
            return 255
        verb = args[0]
        physical: tuple[int, ...] = (
            self.PHYSICAL_SIZE if verb == "size" else (self.PHYSICAL_DENSITY,)
        )
        override = self.size_override if verb == "size" else self.density_override
        if len(args) == 1:
            ctx.write(f"Physical {verb}: {_wm_value(physical)}\n")
            if override is not None:
                ctx.write(f"Override {verb}: {_wm_value(override)}\n")
            return 0
        if args[1] == "reset":
            value: tuple[int, ...] | None = None
        else:
            pattern = r"(\d+)x(\d+)" if verb == "size" else r"(\d+)"
            match = re.fullmatch(pattern, args[1])
            if not match:
                ctx.error(f"Error: bad {'size' if verb == 'size' else 'number'} {args[1]}\n")
                return 255
            value = tuple(int(g) for g in match.groups())
        if verb == "size":
            self.size_override = (value[0], value[1]) if value else None
        else:
            self.density_override = value[0] if value else None
        return 0

    def _user_rotation(self, ctx: CommandContext, args: list[str]) -> int:
        """`wm user-rotation [-d DISPLAY] [free|lock [ROTATION]]`, as Android 14's
        WindowManager shell command answers it."""
        if args[:1] == ["-d"]:
            args = args[2:]
        if not args:
            ctx.write(f"lock {self.rotation()}\n" if self.rotation_locked() else "free\n")
            return 0
        if args[0] == "free":
            self.set_rotation(None)
            return 0
        if args[0] != "lock":
            ctx.error("Error: argument needs to be either -d, free or lock.\n")
            return 255
        if len(args) > 1 and not args[1].lstrip("-").isdigit():
            ctx.error(f"Error: bad rotation: {args[1]}\n")
            return 255
        self.set_rotation(int(args[1]) if len(args) > 1 else self.rotation())
        return 0

    # -- dumpsys window --------------------------------------------------------------
    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        """`dumpsys window [windows|displays|policy]`: Android 14's sections, with what tools
        grep there (mCurrentFocus, mFocusedApp, cur=WxH, mRotation,
        mCurrentRotation=ROTATION_n, mUserRotation, mAwake, mScreenOnFully)."""
        package, full, activity, _pid = self._focus.focus()
        token = window_token(package)
        width, height = self.display_size()
        rotation = self.rotation()
        screen_on = self._power.screen_on
        awake = str(screen_on).lower()
        locked = self.rotation_locked()
        section = args[0] if args else ""
        focus = (
            f"  mCurrentFocus=Window{{{token} u0 {package}/{full}}}\n"
            f"  mFocusedApp=ActivityRecord{{{token} u0 {package}/{activity} t42}}\n"
        )
        bar = STATUS_BAR_HEIGHT
        out: list[str] = []
        if section in ("", "policy"):
            out.append(
                "WINDOW MANAGER POLICY STATE (dumpsys window policy)\n"
                f"    mAwake={awake}\n"
                f"    mScreenOnEarly={awake} mScreenOnFully={awake}\n"
                "    mKeyguardDrawComplete=true mWindowManagerDrawComplete=true\n"
            )
        if section in ("", "displays"):
            mode = "USER_ROTATION_LOCKED" if locked else "USER_ROTATION_FREE"
            out.append(
                "WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)\n"
                "  Display: mDisplayId=0 (organized) rootTasks=3\n"
                f"    init={self.PHYSICAL_SIZE[0]}x{self.PHYSICAL_SIZE[1]} {self.density()}dpi "
                f"cur={width}x{height} app={width}x{height - bar} "
                f"rng={min(width, height)}x{min(width, height) - bar}-"
                f"{max(width, height)}x{max(width, height) - bar}\n"
                "    deferred=false mLayoutNeeded=false\n" + focus + "  DisplayRotation\n"
                "    mCurrentAppOrientation=SCREEN_ORIENTATION_UNSPECIFIED\n"
                f"    mRotation={rotation} mDeferredRotationPauseCount=0\n"
                "    mLandscapeRotation=ROTATION_90 mSeascapeRotation=ROTATION_270\n"
                "    mPortraitRotation=ROTATION_0 mUpsideDownRotation=ROTATION_180\n"
                f"    mUserRotationMode={mode} "
                f"mUserRotation={_ROTATION_NAMES[rotation if locked else 0]} "
                "mCameraRotationMode=0\n"
                "    WindowOrientationListener\n"
                f"      mEnabled={str(not locked and screen_on).lower()}\n"
                f"      mCurrentRotation={_ROTATION_NAMES[rotation]}\n"
            )
        if section in ("", "windows"):
            out.append(
                "WINDOW MANAGER WINDOWS (dumpsys window windows)\n"
                "  Window #0 Window{3c1d2e0 u0 StatusBar}:\n"
                "    mDisplayId=0 rootTaskId=1 mSession=Session{5b6a7c8 2010:u0a10152} "
                "mClient=...\n"
                f"    mFrame=[0,0][{width},{bar}]\n"
                f"  Window #1 Window{{{token} u0 {package}/{full}}}:\n"
                "    mDisplayId=0 rootTaskId=42 mSession=Session{8d9e0f1} mClient=...\n"
                f"    mFrame=[0,0][{width},{height}]\n"
                "\n" + focus
            )
        ctx.write("\n".join(out))
        return 0
