"""The host device: the machine devicelab runs on. Engines run in this process.

Telemetry comes from psutil: this process's RSS (the engine's memory, since it runs here),
system available memory, CPU utilisation and frequency, temperatures where the host has
sensors, and the CPU counters of interference: the system's CPU time and this process
tree's (the engine is this process, its threads and its children), from which the core
derives each trial's ``other_cpu_pct``. A reading the host cannot give is recorded as
``None``, never invented.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

import devicelab
from devicelab import Collector, Device, DeviceInfo, DeviceType

MB = 1024 * 1024
# Finding this process's children walks every process of the host (~4 ms for 100 of them):
# done at most this often, not on every sample. A child found late still counts whole,
# since its counter starts at its birth.
CHILDREN_EVERY_S = 2.0


def cpu_counters(times: Any) -> tuple[float, float]:
    """(total, busy) CPU seconds of psutil's ``cpu_times()``: iowait counts as idle, steal
    as busy (another guest of the hypervisor took it); guest time is already in user."""
    fields = times._asdict()
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    return total, total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)


def process_cpu(proc: Any) -> float:
    """CPU seconds of ``proc``'s threads and of its children that have exited."""
    t = proc.cpu_times()
    return float(
        t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    )


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
        self._children: list[Any] = []
        self._children_at = -CHILDREN_EVERY_S

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
        values["cpu_total_s"], values["cpu_busy_s"] = cpu_counters(ps.cpu_times())
        values["engine_cpu_s"] = self.engine_cpu()
        if self._freq:
            freq = ps.cpu_freq()
            values["cpu_freq_mhz"] = round(freq.current, 1) if freq else None
        if self._temps:
            readings = [t.current for ts in ps.sensors_temperatures().values() for t in ts]
            values["temp_c"] = max(readings) if readings else None
        return values

    def engine_cpu(self) -> float:
        """CPU seconds of the engine: this process and its children (live or exited)."""
        ps = self._psutil
        now = time.monotonic()
        if now - self._children_at >= CHILDREN_EVERY_S:
            self._children_at = now
            try:
                self._children = self._proc.children(recursive=True)
            except ps.Error:
                self._children = []
        total = process_cpu(self._proc)
        for child in self._children:
            # One that exited moved into this process's children_* once it was waited for.
            with contextlib.suppress(ps.Error):
                total += process_cpu(child)
        return round(total, 3)


def engine_pids() -> set[int]:
    import psutil

    me = psutil.Process()
    try:
        return {me.pid, *(c.pid for c in me.children(recursive=True))}
    except psutil.Error:
        return {me.pid}


def cpu_consumers(seconds: float) -> list[tuple[str, float]]:
    """The host's busiest processes outside this process tree over ``seconds``, summed by
    name (a build's many compiler processes are one line): (name, % of all CPU time)."""
    import psutil

    mine = engine_pids()
    procs = [p for p in psutil.process_iter(["name"]) if p.pid not in mine]
    before: dict[int, float] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            before[p.pid] = process_cpu(p)
    total0 = cpu_counters(psutil.cpu_times())[0]
    time.sleep(seconds)
    total = cpu_counters(psutil.cpu_times())[0] - total0
    by_name: dict[str, float] = {}
    for p in procs:
        if p.pid not in before:
            continue
        with contextlib.suppress(psutil.Error):
            used = process_cpu(p) - before[p.pid]
            name = p.info["name"] or str(p.pid)
            by_name[name] = by_name.get(name, 0.0) + used
    if total <= 0:
        return []
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])
    return [(name, round(100 * used / total, 1)) for name, used in ranked if used > 0]


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

    def cpu_consumers(self, seconds: float) -> list[tuple[str, float]]:
        return cpu_consumers(seconds)


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
