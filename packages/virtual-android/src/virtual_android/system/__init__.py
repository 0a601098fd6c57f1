"""The Android system around the shell: logd's buffers with `logcat`/`log` (logd), the package
manager with `pm`/`cmd package`/`dumpsys package` and APK installs (packages), and system tools
such as `cmd`, `ip`, `svc`, `df`, `top`, `ime` and `reboot` (tools)."""

from .logd import LogBuffer, LogEntry
from .packages import InstallError, Package, PackageManager, parse_apk

__all__ = ["InstallError", "LogBuffer", "LogEntry", "Package", "PackageManager", "parse_apk"]
