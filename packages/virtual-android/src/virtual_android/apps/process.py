"""An app's process as the screen and the activity manager see it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import VirtualS24
    from .u2server import DeviceScreen

__all__ = ["AppProcess"]


class AppProcess:
    """Alive while its /proc/PID exists: a kill from the shell or the low-memory killer ends it
    without the app being told."""

    device: VirtualS24
    screen: DeviceScreen
    _pid: int | None = None

    @property
    def pid(self) -> int | None:
        with self.screen.lock:
            return self._pid if self.running() else None

    def running(self) -> bool:
        pid = self._pid
        return pid is not None and self.device.fs.exists(f"/proc/{pid}")
