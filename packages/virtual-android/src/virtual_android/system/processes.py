"""The process table: every process `ps` lists and /proc shows, from init to the apps."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..fs.android import install_process_files
from ..shell.shellio import CancelToken
from .meminfo import kernel_meminfo, loadavg

if TYPE_CHECKING:
    from ..fs.filesystem import VirtualFS
    from ..model.heat import PhoneModel

__all__ = ["SYSTEM_PROCESSES", "ProcessInfo", "ProcessTable"]

FIRST_PID = 10_000
_SHELL_SIZES: dict[str, Any] = {
    "uid": "shell",
    "rss_kb": 3_100,
    "hwm_kb": 3_100,
    "vsz_kb": 10_800_000,
}


@dataclass
class ProcessInfo:
    pid: int
    name: str
    args: str = ""
    uid: str = "shell"
    ppid: int = 1
    rss_kb: int = 0
    hwm_kb: int = 0
    vsz_kb: int = 0
    session: int = 0  # pid of the shell session that started it
    token: CancelToken | None = None
    system: bool = False  # shell may not kill it
    threads: int = 1
    extra: dict[str, str] = field(default_factory=dict)
    # Seconds of model work the process did (its /proc/PID/stat counts the CPU time that
    # keeps busy), and when it started (time.monotonic(): starttime).
    work_s: float = 0.0
    started_s: float = field(default_factory=time.monotonic)


SYSTEM_PROCESSES: tuple[tuple[int, str, str, int, int], ...] = (
    (1, "init", "root", 0, 11_240),
    (2, "kthreadd", "root", 0, 0),
    (312, "ueventd", "root", 1, 3_020),
    (529, "logd", "logd", 1, 9_884),
    (531, "servicemanager", "system", 1, 4_720),
    (533, "hwservicemanager", "system", 1, 5_104),
    (744, "surfaceflinger", "system", 1, 48_300),
    (812, "zygote64", "root", 1, 152_400),
    (813, "zygote", "root", 1, 121_036),
    (1102, "android.hardware.thermal-service.samsung", "system", 1, 6_440),
    (1450, "system_server", "system", 812, 402_880),
    (2010, "com.android.systemui", "u0_a152", 812, 248_200),
    (2288, "com.android.phone", "radio", 812, 118_560),
    (2410, "com.sec.android.app.launcher", "u0_a118", 812, 196_772),
    (3377, "adbd", "shell", 1, 9_332),
)


class ProcessTable:
    """The phone's processes: the daemons init starts, shells and their jobs, apps and the
    emulated tools while they run. Each has its /proc/PID files while it lives; the table is
    also what /proc's system-wide files read (it is their ProcView)."""

    def __init__(self, fs: VirtualFS, model: PhoneModel) -> None:
        self._fs = fs
        self.model = model
        self._lock = threading.RLock()
        self._processes: dict[int, ProcessInfo] = {}
        self._next_pid = FIRST_PID

    # -- ProcView --------------------------------------------------------------------
    @property
    def next_pid(self) -> int:
        with self._lock:
            return self._next_pid

    def process(self, pid: int) -> ProcessInfo | None:
        """The live process ``pid`` (None once it is gone)."""
        with self._lock:
            return self._processes.get(pid)

    def meminfo(self) -> dict[str, int]:
        return kernel_meminfo(self.process_list())

    def loadavg(self) -> tuple[float, float, float]:
        return loadavg(self.model)

    # -- the table -------------------------------------------------------------------
    def process_list(self) -> list[ProcessInfo]:
        with self._lock:
            return sorted(self._processes.values(), key=lambda p: p.pid)

    def start_system_processes(self, shift: int) -> None:
        """The daemons init starts; after a reboot all but init and kthreadd get new pids."""
        for pid, name, uid, ppid, rss in SYSTEM_PROCESSES:
            self.add(
                ProcessInfo(
                    pid=pid if pid <= 2 else pid + shift,
                    name=name,
                    uid=uid,
                    ppid=ppid if ppid <= 2 else ppid + shift,
                    rss_kb=rss,
                    hwm_kb=rss,
                    vsz_kb=rss * 9 if rss else 0,
                    system=True,
                    args=name,
                )
            )

    def system_pid(self, name: str) -> int:
        """The pid of a system daemon (system_server, surfaceflinger, ...) in this boot."""
        with self._lock:
            for proc in self._processes.values():
                if proc.system and proc.name == name:
                    return proc.pid
        return 0

    def spawn(self, **fields: Any) -> int:
        """Add a process with the next free pid; returns the pid."""
        with self._lock:
            pid = self._allocate_pid()
            self.add(ProcessInfo(pid=pid, **fields))
            return pid

    def add(self, proc: ProcessInfo) -> None:
        with self._lock:
            if proc.pid in self._processes:
                raise ValueError(f"pid {proc.pid} is in use")
            self._processes[proc.pid] = proc
        install_process_files(self._fs, self, proc.pid, proc.system)

    def register_process(self, name: str, pid: int | None = None) -> int:
        """Add an emulated process (visible to ps, pidof, /proc/PID/status); returns its pid."""
        app = "." in name
        fields: dict[str, Any] = {
            "name": name,
            "args": name,
            "uid": "u0_a201" if app else "shell",
            "ppid": 812 if app else 1,
            "vsz_kb": 2_400_000,
        }
        if pid is None:
            return self.spawn(**fields)
        self.add(ProcessInfo(pid=pid, **fields))
        return pid

    def register_session(self, command: str, token: CancelToken) -> int:
        """A shell session: `sh -c COMMAND` (or an interactive `sh -`), its own session."""
        with self._lock:
            pid = self._allocate_pid()
            args = f"/system/bin/sh -c {command}" if command else "/system/bin/sh -"
            self.add(
                ProcessInfo(
                    pid=pid,
                    name="sh",
                    args=args,
                    ppid=3377,
                    session=pid,
                    token=token,
                    **_SHELL_SIZES,
                )
            )
            return pid

    def register_job(self, name: str, ppid: int, token: CancelToken) -> int:
        """A background job of a shell session (`cmd &`): a process `kill` can stop."""
        return self.spawn(
            name=name, args=name, ppid=ppid, session=ppid, token=token, **_SHELL_SIZES
        )

    def set_rss(self, pid: int, rss_kb: int) -> None:
        """Set a process's resident set size (VmRSS); VmHWM keeps the peak."""
        with self._lock:
            proc = self._processes.get(pid)
            if proc is None:
                raise KeyError(f"no process {pid}")
            proc.rss_kb = int(rss_kb)
            proc.hwm_kb = max(proc.hwm_kb, proc.rss_kb)
            proc.vsz_kb = max(proc.vsz_kb, proc.rss_kb * 2)

    def add_work(self, pid: int, seconds: float) -> None:
        """CPU time the process spent (its /proc/PID/stat)."""
        with self._lock:
            proc = self._processes.get(pid)
            if proc is not None:
                proc.work_s += seconds

    def kill(self, pid: int) -> None:
        """Kill a process as the low-memory killer would (no-op when it is gone)."""
        with self._lock:
            proc = self._processes.pop(pid, None)
        if proc is None:
            return
        self._fs.drop(f"/proc/{pid}")
        if proc.token is not None:
            proc.token.set()

    def kill_from_shell(self, pid: int) -> str:
        """`kill PID` as the shell user: "" on success, else why not."""
        with self._lock:
            proc = self._processes.get(pid)
        if proc is None:
            return "No such process"
        if proc.system:
            return "Operation not permitted"
        self.kill(pid)
        return ""

    def remove(self, pid: int) -> None:
        """The process exited."""
        with self._lock:
            self._processes.pop(pid, None)
        self._fs.drop(f"/proc/{pid}")

    def reset_pids(self) -> None:
        """After a reboot pids count from the start again."""
        with self._lock:
            self._next_pid = FIRST_PID

    def _allocate_pid(self) -> int:
        while self._next_pid in self._processes:
            self._next_pid += 1
        pid = self._next_pid
        self._next_pid += 1
        return pid
