"""The power manager: whether the screen is on, the power keys, `dumpsys power`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .service import SystemService

if TYPE_CHECKING:
    from ..model.heat import PhoneModel
    from ..shell.interpreter import CommandContext

__all__ = ["PowerService"]

KEYCODE_POWER, KEYCODE_SLEEP, KEYCODE_WAKEUP = 26, 223, 224


class PowerService(SystemService):
    name = "power"

    def __init__(self, model: PhoneModel) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._screen_on = True

    @property
    def screen_on(self) -> bool:
        return self._screen_on  # one read; the lock keeps the key toggles whole

    def set_screen_on(self, on: bool) -> None:
        with self._lock:
            self._screen_on = bool(on)

    def press_power_key(self, keycode: int) -> bool:
        """POWER toggles the screen, SLEEP and WAKEUP set it; False for any other key."""
        with self._lock:
            if keycode == KEYCODE_POWER:
                self._screen_on = not self._screen_on
            elif keycode == KEYCODE_SLEEP:
                self._screen_on = False
            elif keycode == KEYCODE_WAKEUP:
                self._screen_on = True
            else:
                return False
            return True

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        # adbutils' is_screen_on() reads mHoldingDisplaySuspendBlocker; others read
        # mWakefulness or "Display Power: state=".
        on = self.screen_on
        ctx.write(
            "POWER MANAGER (dumpsys power)\n\n"
            "Power Manager State:\n"
            "  mDirty=0x0\n"
            f"  mWakefulness={'Awake' if on else 'Asleep'}\n"
            "  mWakefulnessChanging=false\n"
            f"  mIsPowered={str(self._model.battery().usb_powered).lower()}\n"
            "  mStayOn=false\n"
            f"  mHoldingWakeLockSuspendBlocker={str(on).lower()}\n"
            f"  mHoldingDisplaySuspendBlocker={str(on).lower()}\n"
            f"Display Power: state={'ON' if on else 'OFF'}\n"
        )
        return 0
