"""The phone's physics: thermal zones, CPU frequency policies and throttling, the battery."""

from .heat import BatterySnapshot, PhoneModel, thermal_status

__all__ = ["BatterySnapshot", "PhoneModel", "thermal_status"]
