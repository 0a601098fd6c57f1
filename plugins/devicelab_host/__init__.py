"""The host device: the machine devicelab runs on. Engines run in this process.

Telemetry comes from psutil: this process's RSS (the engine's memory, since it runs here),
system available memory, CPU utilisation and frequency, and temperatures where the host has
sensors. A reading the host cannot give is recorded as ``None``, never invented.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from typing import Any

import devicelab
from devicelab import Collector, Device, DeviceInfo, DeviceType

MB = 1024 * 1024


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _has_temperature_sensors() -> bool:
    import psutil

    read = getattr(psutil, "sensors_temperatures", None)
    try:
        return bool(read and read())
    except OSError:
        return False


class HostCollector(Collector):
    """psutil readings. Which sensors exist is decided once, so each tick stays cheap."""

    name = "host"

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process()
        self._freq = psutil.cpu_freq() is not None
        self._temps = _has_temperature_sensors()

    def start(self) -> None:
        self._psutil.cpu_percent(interval=None)  # the first call only sets the baseline

    def sample(self) -> dict[str, devicelab.Value]:
        ps = self._psutil
        values: dict[str, devicelab.Value] = {
            "mem_mb": round(self._proc.memory_info().rss / MB, 1),
            "mem_available_mb": round(ps.virtual_memory().available / MB, 1),
            "cpu_percent": ps.cpu_percent(interval=None),
            "cpu_freq_mhz": None,
            "temp_c": None,
        }
        if self._freq:
            freq = ps.cpu_freq()
            values["cpu_freq_mhz"] = round(freq.current, 1) if freq else None
        if self._temps:
            readings = [t.current for ts in ps.sensors_temperatures().values() for t in ts]
            values["temp_c"] = max(readings) if readings else None
        return values


class HostDevice(Device):
    kind = "host"

    def info(self) -> dict[str, Any]:
        import psutil

        return {
            "kind": self.kind,
            "os": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cores_logical": os.cpu_count(),
            "cores_physical": psutil.cpu_count(logical=False),
            "ram_mb": round(psutil.virtual_memory().total / MB),
            "python": platform.python_version(),
            "cpu_freq_available": psutil.cpu_freq() is not None,
            "temperature_sensors": "available" if _has_temperature_sensors() else "unavailable",
        }

    def collectors(self) -> list[Collector]:
        return [HostCollector()]


class HostType(DeviceType):
    kind = "host"
    description = "This machine; engines run in-process."

    def discover(self) -> list[DeviceInfo]:
        dev = HostDevice("host", {})
        info = dev.info()
        desc = f"{info['cpu']}, {info['cores_logical']} cores, {info['ram_mb']} MB RAM"
        return [DeviceInfo("host", self.kind, desc, info)]

    def accepts(self, name: str) -> bool:
        return name == "host"

    def check(self, name: str, profile: Mapping[str, Any]) -> None:
        options = profile.get("options", {})
        if options:
            raise devicelab.ScenarioError(
                f"the host device takes no options, but got {', '.join(sorted(options))}. "
                "Remove [device] options."
            )

    def open(self, name: str, profile: Mapping[str, Any]) -> Device:
        return HostDevice(name, profile.get("options", {}))


@devicelab.hookimpl
def devicelab_register_devices(register: Callable[[DeviceType], None]) -> None:
    register(HostType())
