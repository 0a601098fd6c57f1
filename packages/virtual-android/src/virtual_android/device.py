"""VirtualS24: a virtual Samsung Galaxy S24 (SM-S921B, Exynos 2400) served over ADB/TCP.

    with VirtualS24() as dev:
        client.connect(dev.serial)      # the real adb server now sees a device

The device speaks the adbd side of the ADB protocol on 127.0.0.1 (CNXN without AUTH,
like ro.adb.secure=0), runs shell commands in its own small interpreter over
emulated commands, serves sync v1 and forwards tcp:PORT to exposed host ports.
"""

from __future__ import annotations

import logging
import posixpath
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from .display import Frame, ScreenSource, black_frame
from .fs.android import build_system_tree, install_process_files, install_procfs, install_sysfs
from .fs.filesystem import VirtualFS
from .model.heat import PhoneModel
from .shell.commands import builtin_commands
from .shell.interpreter import (
    IO,
    CommandContext,
    CommandHandler,
    ExitShell,
    Interpreter,
    LoopControl,
)
from .shell.shellio import BrokenPipe, CancelToken, ShellCancelled
from .system.logd import LogBuffer, logd_commands
from .system.packages import PackageManager, package_commands
from .system.tools import system_tools
from .transport.transport import Stream, StreamClosed, Transport, TransportServer

log = logging.getLogger(__name__)

__all__ = ["CommandContext", "CommandHandler", "InputEvent", "VirtualS24"]

EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these as emulators
MEM_TOTAL_KB = 7_574_620
_BASE_AVAILABLE_KB = 3_612_400


@dataclass(frozen=True)
class InputEvent:
    """One `input ...` command: kind is keyevent, tap, swipe, draganddrop, text or roll."""

    kind: str
    args: tuple[float | int | str, ...]
    source: str = ""
    longpress: bool = False
    timestamp: float = 0.0


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


_SYSTEM_PROCESSES: tuple[tuple[int, str, str, int, int], ...] = (
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

FINGERPRINT = "samsung/e1sxxx/e1s:14/UP1A.231005.007/S921BXXS3AXI1:user/release-keys"

PROPS: dict[str, str] = {
    "ro.product.model": "SM-S921B",
    "ro.product.name": "e1sxxx",
    "ro.product.device": "e1s",
    "ro.product.brand": "samsung",
    "ro.product.manufacturer": "samsung",
    "ro.product.board": "s5e9945",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.product.cpu.abilist64": "arm64-v8a",
    "ro.product.cpu.abilist32": "armeabi-v7a,armeabi",
    "ro.product.locale": "en-GB",
    "ro.product.system.model": "SM-S921B",
    "ro.product.vendor.model": "SM-S921B",
    "ro.board.platform": "s5e9945",
    "ro.soc.manufacturer": "Samsung",
    "ro.soc.model": "s5e9945",
    "ro.hardware": "s5e9945",
    "ro.hardware.chipname": "s5e9945",
    "ro.arch": "exynos2400",
    "ro.chipname": "exynos2400",
    "ro.build.version.release": "14",
    "ro.build.version.release_or_codename": "14",
    "ro.build.version.sdk": "34",
    "ro.build.version.security_patch": "2024-09-01",
    "ro.build.version.incremental": "S921BXXS3AXI1",
    "ro.build.version.codename": "REL",
    "ro.build.id": "UP1A.231005.007",
    "ro.build.display.id": "UP1A.231005.007.S921BXXS3AXI1",
    "ro.build.type": "user",
    "ro.build.tags": "release-keys",
    "ro.build.characteristics": "phone",
    "ro.build.fingerprint": FINGERPRINT,
    "ro.bootimage.build.fingerprint": FINGERPRINT,
    "ro.vendor.build.fingerprint": FINGERPRINT,
    "ro.serialno": "R5CX40S24VT",
    "ro.boot.serialno": "R5CX40S24VT",
    "ro.debuggable": "0",
    "ro.secure": "1",
    "ro.adb.secure": "0",
    "ro.sf.lcd_density": "416",
    "ro.opengles.version": "196610",
    "ro.config.ringtone": "Over_the_Horizon.ogg",
    "ro.crypto.state": "encrypted",
    "ro.treble.enabled": "true",
    "ro.vndk.version": "34",
    "ro.zygote": "zygote64_32",
    "ro.kernel.version": "6.1",
    "ro.csc.sales_code": "EUX",
    "ro.boot.hardware": "s5e9945",
    "ro.boot.em.model": "SM-S921B",
    "ro.hardware.egl": "samsung",
    "ro.hardware.vulkan": "samsung",
    "sys.boot_completed": "1",
    "dev.bootcomplete": "1",
    "init.svc.adbd": "running",
    "persist.sys.timezone": "Europe/London",
    "persist.sys.usb.config": "mtp,adb",
    "service.adb.tcp.port": "5555",
    "gsm.operator.alpha": "",
    "ril.serialnumber": "R5CX40S24VT",
    "dalvik.vm.heapsize": "512m",
    "dalvik.vm.heapgrowthlimit": "256m",
}

SETTINGS: dict[str, dict[str, str]] = {
    "system": {
        "screen_brightness": "128",
        "screen_brightness_mode": "0",
        "screen_off_timeout": "60000",
        "accelerometer_rotation": "1",
        "user_rotation": "0",
        "pointer_location": "0",
        "show_touches": "0",
        "font_scale": "1.0",
    },
    "secure": {
        "default_input_method": "com.samsung.android.honeyboard/.service.HoneyBoardService",
        "enabled_input_methods": "com.samsung.android.honeyboard/.service.HoneyBoardService",
        "android_id": "6f3c2a91d04b7e15",
        "location_mode": "3",
    },
    "global": {
        "adb_enabled": "1",
        "adb_wifi_enabled": "1",
        "airplane_mode_on": "0",
        "stay_on_while_plugged_in": "0",
        "window_animation_scale": "1.0",
        "transition_animation_scale": "1.0",
        "animator_duration_scale": "1.0",
        "development_settings_enabled": "1",
        "wifi_on": "1",
    },
}


SHUTDOWN_SECONDS = 0.5  # from `reboot` to the transport dropping


class VirtualS24:
    """A virtual Galaxy S24 (SM-S921B) speaking the adbd side of ADB on loopback TCP."""

    BANNER = (
        "device::ro.product.name=e1sxxx;ro.product.model=SM-S921B;ro.product.device=e1s;"
        "features=shell_v2,cmd"
    )
    PHYSICAL_SIZE = (1080, 2340)
    PHYSICAL_DENSITY = 416
    HOST = "127.0.0.1"

    def __init__(self, port: int = 0, *, boot_seconds: float = 2.0) -> None:
        if port in EMULATOR_PORTS:
            raise ValueError(
                f"port {port} is in 5555-5585, which the adb server probes as emulators"
            )
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.RLock()
        self.props: dict[str, str] = dict(PROPS)
        self.settings: dict[str, dict[str, str]] = {k: dict(v) for k, v in SETTINGS.items()}
        self.size_override: tuple[int, int] | None = None
        self.density_override: int | None = None
        self._screen_on = True
        # What screencap, `uiautomator dump` and the framebuffer service show; the apps'
        # DeviceScreen puts itself here when it is created (apps.u2server.screen_of).
        self.screen_source: ScreenSource | None = None
        self.model = PhoneModel()
        self.fs = VirtualFS()
        self.boot_seconds = boot_seconds  # how long `reboot` keeps the phone away
        self.boots = 1
        self.logs = LogBuffer()
        self.packages = PackageManager(self)
        self._reboot_hooks: list[Callable[[], None]] = []
        self._rebooting = threading.Event()
        self._reverse: dict[str, tuple[Transport, str]] = {}  # device spec -> (transport, host)
        self._builtins: dict[str, CommandHandler] = builtin_commands()
        self._builtins.update(logd_commands())
        self._builtins.update(package_commands())
        self._builtins.update(system_tools())
        self._extensions: dict[str, CommandHandler] = {}
        self._merged_commands: dict[str, CommandHandler] | None = None
        self._processes: dict[int, ProcessInfo] = {}
        self._next_pid = 10_000
        self._exposed: dict[int, int] = {}
        self._input_events: list[InputEvent] = []
        self._server = TransportServer(self.BANNER.encode(), self._open, self._transport_closed)
        self._started = False
        self._stopped = False
        build_system_tree(self.fs, PROPS, self._builtins)
        install_procfs(self.fs, self)
        install_sysfs(self.fs, self.model)
        self._start_system_processes(0)
        self._log_boot()

    def _start_system_processes(self, shift: int) -> None:
        """The daemons init starts; after a reboot all but init and kthreadd get new pids."""
        for pid, name, uid, ppid, rss in _SYSTEM_PROCESSES:
            moved = pid if pid <= 2 else pid + shift
            self._add_process(
                ProcessInfo(
                    pid=moved,
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

    def _log_boot(self) -> None:
        """What a phone's buffers hold right after boot (abridged)."""
        init, server = 1, self.system_pid("system_server")
        zygote = self.system_pid("zygote64")
        logs = self.logs
        logs.write("init", "init first stage started!", pid=init, buffer="main")
        logs.write("libc", 'Access denied finding property "ro.vendor.hw.revision"', pid=init)
        logs.write("Zygote", f"System server process {server} has been created", pid=zygote)
        system = "system"
        logs.write("SystemServer", "Entered the Android system server!", pid=server, buffer=system)
        logs.write("ActivityManager", "System now ready", pid=server, buffer=system)
        logs.write("BootReceiver", "Copying audit failures to DropBox", pid=server, buffer=system)
        flinger = self.system_pid("surfaceflinger")
        logs.write("SurfaceFlinger", "Boot is finished (9421 ms)", pid=flinger)

    # -- lifecycle -------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the device is not started")
        return self._port

    @property
    def serial(self) -> str:
        return f"{self.HOST}:{self.port}"

    def start(self) -> None:
        """Bind 127.0.0.1 and serve in background threads."""
        with self._lock:
            if self._started:
                return
            if self._requested_port:
                self._port = self._server.bind(self.HOST, self._requested_port)
            else:
                self._port = self._bind_free_port()
            self._server.start()
            self._started = True
        log.info("virtual S24 listening on %s", self.serial)

    def _bind_free_port(self) -> int:
        held: list[socket.socket] = []
        try:
            for _ in range(64):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probe.bind((self.HOST, 0))
                port: int = probe.getsockname()[1]
                if port in EMULATOR_PORTS:
                    held.append(probe)  # keep it so the next try gets another port
                    continue
                probe.close()
                try:
                    return self._server.bind(self.HOST, port)
                except OSError:
                    continue
        finally:
            for sock in held:
                sock.close()
        raise OSError("no free loopback port outside 5555-5585")

    def stop(self) -> None:
        """Close the listener and every transport; idempotent."""
        with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        self._server.stop()
        for proc in self.process_list():
            if proc.token is not None:
                proc.token.set()

    def __enter__(self) -> VirtualS24:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.serial if self._port is not None else "not started"
        return f"VirtualS24({where})"

    # -- fault switches --------------------------------------------------------
    def cut_transport(self) -> None:
        """Drop every TCP transport at once; the listener stays, so adb can reconnect."""
        self._server.cut()

    def set_offline(self, offline: bool) -> None:
        """While True, drop transports and refuse new connections."""
        self._server.set_offline(offline)

    def set_hung(self, hung: bool) -> None:
        """While True, read everything but answer nothing (OPENs hang, shells print nothing)."""
        self._server.gate.set(hung)

    def transport_count(self) -> int:
        """How many adb transports (TCP connections) are currently open."""
        return len(self._server.transports())

    # -- the display -----------------------------------------------------------
    def rotation(self) -> int:
        """The display's rotation, 0-3 (Surface.ROTATION_0..270).

        As on a phone, `user_rotation` applies only while auto-rotate is off
        (`accelerometer_rotation` 0); with it on the sensor decides, and this phone lies
        upright, so the display stays at 0.
        """
        system = self.settings["system"]
        if system.get("accelerometer_rotation", "1") != "0":
            return 0
        value = system.get("user_rotation", "0") or "0"
        return int(value) % 4 if value.isdigit() else 0

    def set_rotation(self, rotation: int | None) -> None:
        """Lock the display at `rotation` (0-3), or let the sensor decide again (None)."""
        system = self.settings["system"]
        if rotation is None:
            system["accelerometer_rotation"] = "1"
            return
        system["accelerometer_rotation"] = "0"
        system["user_rotation"] = str(int(rotation) % 4)

    def display_size(self) -> tuple[int, int]:
        """The logical display size in the current rotation (width and height swap at 90/270)."""
        width, height = self.size_override or self.PHYSICAL_SIZE
        return (height, width) if self.rotation() % 2 else (width, height)

    @property
    def screen_on(self) -> bool:
        with self._lock:
            return self._screen_on

    def set_screen_on(self, on: bool) -> None:
        with self._lock:
            self._screen_on = bool(on)

    def press_power_key(self, keycode: int) -> bool:
        """POWER (26) toggles the screen, SLEEP (223) and WAKEUP (224) set it; False for
        any other key."""
        with self._lock:
            if keycode == 26:
                self._screen_on = not self._screen_on
            elif keycode == 223:
                self._screen_on = False
            elif keycode == 224:
                self._screen_on = True
            else:
                return False
            return True

    def capture_screen(self) -> Frame:
        """The picture on the display now: what screencap and the framebuffer service send."""
        source = self.screen_source
        if source is None or not self.screen_on:
            return black_frame(*self.display_size())
        return source.frame()

    # -- reboot ----------------------------------------------------------------
    def on_reboot(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` while the phone goes down (apps stop, servers close)."""
        with self._lock:
            self._reboot_hooks.append(hook)

    @property
    def rebooting(self) -> bool:
        return self._rebooting.is_set()

    def reboot(self, wait: bool = False) -> None:
        """Reboot as `adb reboot` does: every transport drops at once, the phone refuses
        connections for ``boot_seconds``, then comes back with uptime reset, its processes
        started anew (new pids, apps stopped, shells gone) and /data, settings and persist.*
        properties kept. The adb server reconnects by itself (`adb wait-for-device`)."""
        with self._lock:
            if self._rebooting.is_set() or self._stopped:
                return
            self._rebooting.set()
        thread = threading.Thread(target=self._reboot, name="reboot", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def _reboot(self) -> None:
        server = self.system_pid("system_server")
        self.logs.write("ShutdownThread", "Rebooting, reason: null", pid=server, buffer="system")
        # A phone shuts its services down before the link drops (seconds on an S24); dropping
        # it at once can beat the service's OKAY to the adb server ("error: closed").
        time.sleep(SHUTDOWN_SECONDS)
        self._server.set_offline(True)
        with self._lock:
            hooks = list(self._reboot_hooks)
            self._reverse.clear()
        for hook in hooks:
            try:
                hook()
            except Exception:  # one app failing to stop must not keep the phone down
                log.exception("reboot hook failed")
        for proc in self.process_list():
            self.kill_process(proc.pid)
        with self._lock:
            self.boots += 1
            self.props = {
                **PROPS,
                **{k: v for k, v in self.props.items() if k.startswith("persist.")},
            }
            self._next_pid = 10_000
        self.logs.clear()
        self.model.boot_time = time.time()
        self.model.boot_monotonic = time.monotonic()
        time.sleep(self.boot_seconds)
        with self._lock:
            stopped = self._stopped
        if not stopped:
            self.set_screen_on(True)  # a phone boots to a lit screen
            self._start_system_processes(shift=23 * (self.boots - 1))
            self._log_boot()
            self._server.set_offline(False)
        self._rebooting.clear()

    # -- adb reverse -----------------------------------------------------------
    def add_reverse(
        self, transport: Transport, device_spec: str, host_spec: str, rebind: bool = True
    ) -> bool:
        """Listen on ``device_spec`` (tcp:PORT) for ``host_spec`` over ``transport``; False
        when it exists and ``rebind`` is off."""
        with self._lock:
            if not rebind and device_spec in self._reverse:
                return False
            self._reverse[device_spec] = (transport, host_spec)
            return True

    def remove_reverse(self, transport: Transport, device_spec: str | None = None) -> bool:
        """Remove one mapping of ``transport`` (all of them when ``device_spec`` is None)."""
        with self._lock:
            mine = [k for k, (t, _h) in self._reverse.items() if t is transport]
            if device_spec is not None:
                if device_spec not in mine:
                    return False
                mine = [device_spec]
            for key in mine:
                del self._reverse[key]
            return True

    def reverse_list(self, transport: Transport | None = None) -> list[tuple[str, str]]:
        """(device spec, host spec) pairs, of one transport or of all."""
        with self._lock:
            return [
                (k, h) for k, (t, h) in self._reverse.items() if transport is None or t is transport
            ]

    def open_reverse(self, device_port: int, timeout: float = 5.0) -> Stream:
        """Connect to the phone's localhost:DEVICE_PORT as an app on it would: through an
        `adb reverse` mapping, the adb server connects the stream to the host side. Raises
        ConnectionRefusedError when no mapping or host listener answers."""
        with self._lock:
            entry = self._reverse.get(f"tcp:{device_port}")
        if entry is None:
            raise ConnectionRefusedError(f"nothing listens on the phone's tcp:{device_port}")
        transport, host_spec = entry
        try:
            return transport.open_stream(host_spec, timeout)
        except StreamClosed:
            raise ConnectionRefusedError(f"the host refused {host_spec}") from None

    def _transport_closed(self, transport: Transport) -> None:
        self.remove_reverse(transport)

    # -- model inputs ----------------------------------------------------------
    def add_work(self, seconds: float, intensity: float, pid: int | None = None) -> None:
        """Work done on the phone: heats the thermal zones and drains the battery, and counts
        in /proc/stat; with ``pid``, also in that process's /proc/PID/stat (without, it is
        work of no listed process, as a kernel thread's)."""
        self.model.add_work(seconds, intensity)
        if pid is not None and seconds > 0:
            with self._lock:
                proc = self._processes.get(pid)
                if proc is not None:
                    proc.work_s += seconds

    def temperatures(self) -> dict[str, float]:
        """Current zone temperatures in degrees C (what thermal_zone*/temp reports / 1000)."""
        return self.model.temperatures()

    @property
    def input_events(self) -> list[InputEvent]:
        """Events recorded from `input keyevent|tap|swipe|text`, oldest first."""
        with self._lock:
            return list(self._input_events)

    def record_input(
        self, kind: str, args: tuple[float | int | str, ...], source: str, longpress: bool = False
    ) -> None:
        with self._lock:
            self._input_events.append(InputEvent(kind, args, source, longpress, time.time()))

    # -- processes -------------------------------------------------------------
    def register_process(self, name: str, pid: int | None = None) -> int:
        """Add an emulated process (visible to ps, pidof, /proc/PID/status); returns its pid."""
        with self._lock:
            if pid is None:
                pid = self._allocate_pid()
            elif pid in self._processes:
                raise ValueError(f"pid {pid} is in use")
            uid = "u0_a201" if "." in name else "shell"
            ppid = 812 if "." in name else 1
            self._add_process(
                ProcessInfo(pid=pid, name=name, args=name, uid=uid, ppid=ppid, vsz_kb=2_400_000)
            )
            return pid

    def set_process_rss(self, pid: int, rss_kb: int) -> None:
        """Set a process's resident set size (VmRSS); VmHWM keeps the peak."""
        with self._lock:
            proc = self._processes.get(pid)
            if proc is None:
                raise KeyError(f"no process {pid}")
            proc.rss_kb = int(rss_kb)
            proc.hwm_kb = max(proc.hwm_kb, proc.rss_kb)
            proc.vsz_kb = max(proc.vsz_kb, proc.rss_kb * 2)

    def kill_process(self, pid: int) -> None:
        """Kill a process as the low-memory killer would (no-op when it is gone)."""
        with self._lock:
            proc = self._processes.pop(pid, None)
        if proc is None:
            return
        self.fs.drop(f"/proc/{pid}")
        if proc.token is not None:
            proc.token.set()

    def _allocate_pid(self) -> int:
        while self._next_pid in self._processes:
            self._next_pid += 1
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def _add_process(self, proc: ProcessInfo) -> None:
        with self._lock:
            self._processes[proc.pid] = proc
        install_process_files(self.fs, self, proc.pid, proc.system)

    def unregister_process(self, pid: int) -> None:
        with self._lock:
            self._processes.pop(pid, None)
        self.fs.drop(f"/proc/{pid}")

    def process_list(self) -> list[ProcessInfo]:
        with self._lock:
            return sorted(self._processes.values(), key=lambda p: p.pid)

    def register_session(self, command: str, token: CancelToken) -> int:
        with self._lock:
            pid = self._allocate_pid()
            args = f"/system/bin/sh -c {command}" if command else "/system/bin/sh -"
            self._add_process(
                ProcessInfo(
                    pid=pid,
                    name="sh",
                    args=args,
                    uid="shell",
                    ppid=3377,
                    rss_kb=3_100,
                    hwm_kb=3_100,
                    vsz_kb=10_800_000,
                    token=token,
                )
            )
            self._processes[pid].session = pid
            return pid

    def register_job(self, name: str, ppid: int, token: CancelToken) -> int:
        """A background job of a shell session (`cmd &`): a process `kill` can stop."""
        with self._lock:
            pid = self._allocate_pid()
            self._add_process(
                ProcessInfo(
                    pid=pid,
                    name=name,
                    args=name,
                    uid="shell",
                    ppid=ppid,
                    session=ppid,
                    rss_kb=3_100,
                    hwm_kb=3_100,
                    vsz_kb=10_800_000,
                    token=token,
                )
            )
            return pid

    def kill_from_shell(self, pid: int) -> str:
        with self._lock:
            proc = self._processes.get(pid)
        if proc is None:
            return "No such process"
        if proc.system:
            return "Operation not permitted"
        self.kill_process(pid)
        return ""

    def process(self, pid: int) -> ProcessInfo | None:
        """The live process ``pid`` (None once it is gone)."""
        with self._lock:
            return self._processes.get(pid)

    @property
    def next_pid(self) -> int:
        with self._lock:
            return self._next_pid

    # -- commands --------------------------------------------------------------
    def add_command(self, name: str, handler: CommandHandler) -> None:
        """Register an emulated command (a bare name like "am", or an absolute path).

        handler(ctx: CommandContext) -> int runs in the session's thread; it streams with
        ctx.stdout.write(), reads ctx.stdin, and must return once ctx.cancelled is set
        (the client closed the stream or the process was killed). While it runs it is a
        process named after argv[0], visible to ps/pidof and killable with kill.
        """
        with self._lock:
            self._extensions[name] = handler
            self._merged_commands = None

    def remove_command(self, name: str) -> None:
        with self._lock:
            self._extensions.pop(name, None)
            self._merged_commands = None

    def commands_snapshot(self) -> dict[str, CommandHandler]:
        """Builtins and extensions by name; shared until the next change: read it only."""
        with self._lock:
            merged = self._merged_commands
            if merged is None:
                merged = dict(self._builtins)
                merged.update(self._extensions)
                self._merged_commands = merged
            return merged

    def _is_extension(self, handler: CommandHandler) -> bool:
        with self._lock:
            return any(h is handler for h in self._extensions.values())

    def run_command(
        self,
        handler: CommandHandler,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        io: IO,
        token: CancelToken,
        shell: Interpreter,
    ) -> int:
        extension = self._is_extension(handler)
        proc_token = token.child() if extension else token
        ctx = CommandContext(
            argv, env, cwd, io.stdin, io.stdout, io.stderr, proc_token, self, shell
        )
        pid = 0
        if extension:
            with self._lock:
                pid = self._allocate_pid()
                self._add_process(
                    ProcessInfo(
                        pid=pid,
                        name=posixpath.basename(argv[0]),
                        args=" ".join(argv),
                        uid="shell",
                        ppid=shell.state.pid,
                        session=shell.state.pid,
                        token=proc_token,
                        vsz_kb=12_000_000,
                        rss_kb=4_000,
                        hwm_kb=4_000,
                    )
                )
            ctx.pid = pid
        try:
            return int(handler(ctx))
        except ShellCancelled:
            if token.is_set() or not extension:
                raise
            return 137
        except (BrokenPipe, ExitShell, LoopControl):
            raise
        except Exception as exc:
            log.exception("emulated command %r failed", argv[0])
            io.stderr.write(f"{posixpath.basename(argv[0])}: {type(exc).__name__}: {exc}\n")
            return 1
        finally:
            if extension:
                proc_token.detach()
                self.unregister_process(pid)

    # -- ports -----------------------------------------------------------------
    def expose_port(self, device_port: int, host_port: int) -> None:
        """Make the device's tcp:DEVICE_PORT reach 127.0.0.1:HOST_PORT on the host."""
        with self._lock:
            self._exposed[int(device_port)] = int(host_port)

    def unexpose_port(self, device_port: int) -> None:
        with self._lock:
            self._exposed.pop(int(device_port), None)

    def exposed_port(self, device_port: int) -> int | None:
        with self._lock:
            return self._exposed.get(device_port)

    # -- transport -------------------------------------------------------------
    def _open(self, stream: Stream) -> None:
        from .transport.services import open_service

        open_service(self, stream)

    # -- derived state ---------------------------------------------------------
    def meminfo(self) -> dict[str, int]:
        with self._lock:
            used = sum(p.rss_kb for p in self._processes.values() if not p.system)
        available = max(180_000, _BASE_AVAILABLE_KB - used)
        free = max(60_000, available // 9)
        cached = max(100_000, available - free - 220_000)
        return {
            "MemTotal": MEM_TOTAL_KB,
            "MemFree": free,
            "MemAvailable": available,
            "Buffers": 9_412,
            "Cached": cached,
            "SwapCached": 41_220,
            "Active": 2_203_144,
            "Inactive": 1_802_556,
            "Unevictable": 241_120,
            "Mlocked": 240_000,
            "SwapTotal": 8_388_604,
            "SwapFree": 6_901_212,
            "Dirty": 1_024,
            "Writeback": 0,
            "AnonPages": 1_904_332 + used,
            "Mapped": 1_188_440,
            "Shmem": 30_704,
            "KReclaimable": 220_480,
            "Slab": 505_316,
            "SReclaimable": 140_112,
            "SUnreclaim": 365_204,
            "KernelStack": 71_856,
            "PageTables": 142_420,
            "CommitLimit": 12_175_912,
            "Committed_AS": 128_100_560,
            "VmallocTotal": 263_061_440,
            "VmallocUsed": 190_760,
            "CmaTotal": 540_672,
            "CmaFree": 12_004,
        }

    def loadavg(self) -> tuple[float, float, float]:
        load = self.model.load()
        return (1.2 + 7.5 * load, 1.4 + 4.0 * load, 1.6 + 2.0 * load)
