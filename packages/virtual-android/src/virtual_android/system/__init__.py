"""The Android system around the shell: one module per system service (properties, settings,
power, window, input, battery, thermal, meminfo/cpuinfo, display with screencap and
screenrecord, activity, package with `pm`), each owning its state, its tools and its `dump()`,
found by name in the ServiceManager (service); the process table (processes); logd's buffers
with `logcat`/`log` (logd); and system tools such as `cmd`, `ip`, `svc`, `df`, `top`, `ime` and
`reboot` (tools)."""

from .logd import LogBuffer, LogEntry
from .packages import InstallError, Package, PackageManager, parse_apk
from .service import ServiceManager, SystemService

__all__ = [
    "InstallError",
    "LogBuffer",
    "LogEntry",
    "Package",
    "PackageManager",
    "ServiceManager",
    "SystemService",
    "parse_apk",
]
