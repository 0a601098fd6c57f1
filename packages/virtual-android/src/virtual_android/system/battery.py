"""The battery service: `dumpsys battery` over the phone's model, and its `set`, `unplug` and
`reset` that tools use to fake a charger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .service import SystemService

if TYPE_CHECKING:
    from ..model.heat import PhoneModel
    from ..shell.interpreter import CommandContext

__all__ = ["BatteryService"]


class BatteryService(SystemService):
    name = "battery"

    def __init__(self, model: PhoneModel) -> None:
        self._model = model

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        if args:
            verb = args[0]
            if verb == "unplug":
                self._model.usb_powered = False
                self._model.ac_powered = False
                return 0
            if verb == "reset":
                self._model.level_override = None
                self._model.usb_powered = False
                self._model.ac_powered = False
                return 0
            if verb == "set" and len(args) >= 3:
                key, value = args[1], args[2]
                if key == "level":
                    self._model.level_override = int(value)
                elif key == "usb":
                    self._model.usb_powered = value not in ("0", "false")
                elif key == "ac":
                    self._model.ac_powered = value not in ("0", "false")
                return 0
            return 0
        snap = self._model.battery()
        plugged = snap.usb_powered or snap.ac_powered
        lines = [
            "Current Battery Service state:",
            f"  AC powered: {str(snap.ac_powered).lower()}",
            f"  USB powered: {str(snap.usb_powered).lower()}",
            "  Wireless powered: false",
            "  Dock powered: false",
            f"  Max charging current: {3000000 if plugged else 0}",
            f"  Max charging voltage: {5000000 if plugged else 0}",
            f"  Charge counter: {snap.charge_counter_uah}",
            f"  status: {snap.status}",
            "  health: 2",
            "  present: true",
            f"  level: {snap.level}",
            "  scale: 100",
            f"  voltage: {snap.voltage_mv}",
            f"  temperature: {snap.temperature_tenths}",
            "  technology: Li-ion",
            "  Charging state: 0",
            "  Charging policy: 1",
            "  Capacity level: -1",
            f"  mSecPlugTypeSummary: {1 if snap.ac_powered else 2 if snap.usb_powered else 0}",
            f"  current now: {snap.current_ma}",
            f"  charge counter: {snap.charge_counter_uah}",
            "  mHealthInfo2p1.batteryFullChargeDesignCapacityUah: 3880000",
            "  mHealthInfo2p1.batteryCurrentNow: " + str(snap.current_ma * 1000),
        ]
        ctx.write("\n".join(lines) + "\n")
        return 0
