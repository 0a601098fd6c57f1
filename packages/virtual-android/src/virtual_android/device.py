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

from .commands import builtin_commands
from .fs import VirtualFS
from .model import POLICIES, ZONES, PhoneModel
from .shell import IO, CommandContext, CommandHandler, ExitShell, Interpreter, LoopControl
from .shellio import BrokenPipe, CancelToken, ShellCancelled
from .transport import Stream, TransportServer

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


class VirtualS24:
    """A virtual Galaxy S24 (SM-S921B) speaking the adbd side of ADB on loopback TCP."""

    BANNER = (
        "device::ro.product.name=e1sxxx;ro.product.model=SM-S921B;ro.product.device=e1s;"
        "features=shell_v2,cmd"
    )
    PHYSICAL_SIZE = (1080, 2340)
    PHYSICAL_DENSITY = 416
    HOST = "127.0.0.1"

    def __init__(self, port: int = 0) -> None:
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
        self.model = PhoneModel()
        self.fs = VirtualFS()
        self._builtins: dict[str, CommandHandler] = builtin_commands()
        self._extensions: dict[str, CommandHandler] = {}
        self._merged_commands: dict[str, CommandHandler] | None = None
        self._processes: dict[int, ProcessInfo] = {}
        self._next_pid = 10_000
        self._exposed: dict[int, int] = {}
        self._input_events: list[InputEvent] = []
        self._server = TransportServer(self.BANNER.encode(), self._open)
        self._started = False
        self._stopped = False
        self._build_filesystem()
        for pid, name, uid, ppid, rss in _SYSTEM_PROCESSES:
            self._add_process(
                ProcessInfo(
                    pid=pid,
                    name=name,
                    uid=uid,
                    ppid=ppid,
                    rss_kb=rss,
                    hwm_kb=rss,
                    vsz_kb=rss * 9 if rss else 0,
                    system=True,
                    args=name,
                )
            )

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
        for proc in self._process_list():
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

    # -- model inputs ----------------------------------------------------------
    def add_work(self, seconds: float, intensity: float) -> None:
        """Work done on the phone: heats the thermal zones and drains the battery."""
        self.model.add_work(seconds, intensity)

    def temperatures(self) -> dict[str, float]:
        """Current zone temperatures in degrees C (what thermal_zone*/temp reports / 1000)."""
        return self.model.temperatures()

    @property
    def input_events(self) -> list[InputEvent]:
        """Events recorded from `input keyevent|tap|swipe|text`, oldest first."""
        with self._lock:
            return list(self._input_events)

    def _record_input(
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
        pid = proc.pid
        self.fs.add_generated(f"/proc/{pid}/status", lambda: self._proc_status(pid))
        self.fs.add_generated(f"/proc/{pid}/cmdline", lambda: self._proc_cmdline(pid))
        self.fs.add_generated(f"/proc/{pid}/comm", lambda: self._proc_field(pid, "name"))
        self.fs.add_generated(
            f"/proc/{pid}/oom_score_adj", lambda: b"0\n" if proc.system else b"700\n"
        )

    def _unregister_process(self, pid: int) -> None:
        with self._lock:
            self._processes.pop(pid, None)
        self.fs.drop(f"/proc/{pid}")

    def _process_list(self) -> list[ProcessInfo]:
        with self._lock:
            return sorted(self._processes.values(), key=lambda p: p.pid)

    def _register_session(self, command: str, token: CancelToken) -> int:
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

    def _kill_from_shell(self, pid: int) -> str:
        with self._lock:
            proc = self._processes.get(pid)
        if proc is None:
            return "No such process"
        if proc.system:
            return "Operation not permitted"
        self.kill_process(pid)
        return ""

    def _proc_field(self, pid: int, name: str) -> bytes:
        with self._lock:
            proc = self._processes.get(pid)
        return (str(getattr(proc, name)) + "\n").encode() if proc else b""

    def _proc_cmdline(self, pid: int) -> bytes:
        with self._lock:
            proc = self._processes.get(pid)
        if proc is None:
            return b""
        return ("\0".join((proc.args or proc.name).split(" ")) + "\0").encode()

    def _proc_status(self, pid: int) -> bytes:
        with self._lock:
            proc = self._processes.get(pid)
        if proc is None:
            return b""
        uid = {"root": 0, "system": 1000, "shell": 2000, "logd": 1036, "radio": 1001}.get(
            proc.uid, 10201
        )
        rss = proc.rss_kb
        lines = [
            f"Name:\t{proc.name[:15]}",
            "Umask:\t0077",
            "State:\tS (sleeping)",
            f"Tgid:\t{pid}",
            "Ngid:\t0",
            f"Pid:\t{pid}",
            f"PPid:\t{proc.ppid}",
            "TracerPid:\t0",
            f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}",
            f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}",
            "FDSize:\t64",
            "Groups:\t1004 1007 1011 1015 1028 3001 3002 3003 3006",
            f"VmPeak:\t{max(proc.vsz_kb, proc.hwm_kb):>8} kB",
            f"VmSize:\t{proc.vsz_kb:>8} kB",
            f"VmLck:\t{0:>8} kB",
            f"VmPin:\t{0:>8} kB",
            f"VmHWM:\t{proc.hwm_kb:>8} kB",
            f"VmRSS:\t{rss:>8} kB",
            f"RssAnon:\t{int(rss * 0.8):>8} kB",
            f"RssFile:\t{rss - int(rss * 0.8) - int(rss * 0.01):>8} kB",
            f"RssShmem:\t{int(rss * 0.01):>8} kB",
            f"VmData:\t{int(proc.vsz_kb * 0.3):>8} kB",
            f"VmStk:\t{136:>8} kB",
            f"VmExe:\t{2048:>8} kB",
            f"VmLib:\t{12288:>8} kB",
            f"VmPTE:\t{max(12, rss // 512):>8} kB",
            f"VmSwap:\t{0:>8} kB",
            "CoreDumping:\t0",
            "THP_enabled:\t1",
            f"Threads:\t{proc.threads}",
            "SigQ:\t0/29562",
            "Cpus_allowed:\t3ff",
            "Cpus_allowed_list:\t0-9",
            "voluntary_ctxt_switches:\t120",
            "nonvoluntary_ctxt_switches:\t7",
        ]
        return ("\n".join(lines) + "\n").encode()

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

    def _commands_snapshot(self) -> dict[str, CommandHandler]:
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

    def _run_command(
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
                self._unregister_process(pid)

    # -- ports -----------------------------------------------------------------
    def expose_port(self, device_port: int, host_port: int) -> None:
        """Make the device's tcp:DEVICE_PORT reach 127.0.0.1:HOST_PORT on the host."""
        with self._lock:
            self._exposed[int(device_port)] = int(host_port)

    def unexpose_port(self, device_port: int) -> None:
        with self._lock:
            self._exposed.pop(int(device_port), None)

    def _exposed_port(self, device_port: int) -> int | None:
        with self._lock:
            return self._exposed.get(device_port)

    # -- transport -------------------------------------------------------------
    def _open(self, stream: Stream) -> None:
        from .services import open_service

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

    # -- filesystem ------------------------------------------------------------
    def _build_filesystem(self) -> None:
        fs = self.fs
        for path, mode, uid, gid in (
            ("/system/bin", 0o755, 0, 2000),
            ("/system/xbin", 0o755, 0, 2000),
            ("/vendor/bin", 0o755, 0, 2000),
            ("/data", 0o771, 1000, 1000),
            ("/data/local", 0o751, 0, 0),
            ("/data/local/tmp", 0o771, 2000, 2000),
            ("/data/misc/perfetto-traces", 0o773, 9999, 9999),
            ("/data/misc/perfetto-configs", 0o775, 9999, 9999),
            ("/storage/emulated/0", 0o771, 0, 9997),
            ("/storage/self", 0o755, 0, 0),
            ("/mnt", 0o755, 0, 1000),
            ("/dev", 0o755, 0, 0),
            ("/apex", 0o755, 0, 0),
        ):
            fs.add_dir(path, mode, uid, gid)
        for sub in (
            "Android",
            "DCIM",
            "Download",
            "Documents",
            "Movies",
            "Music",
            "Pictures",
            "Alarms",
            "Notifications",
            "Podcasts",
            "Ringtones",
        ):
            fs.add_dir(f"/storage/emulated/0/{sub}", 0o771, 0, 9997)
        fs.add_link("/storage/self/primary", "/storage/emulated/0")
        fs.add_link("/sdcard", "/storage/self/primary")
        fs.add_link("/etc", "/system/etc")
        fs.add_dir("/system/etc", 0o755)
        fs.add_file(
            "/system/etc/hosts", "127.0.0.1       localhost\n::1             ip6-localhost\n"
        )
        fs.add_file(
            "/system/build.prop",
            "".join(f"{k}={v}\n" for k, v in PROPS.items() if k.startswith("ro.")),
        )
        for name in sorted(
            set(self._builtins) | {"sh", "toybox", "am", "pm", "cmd", "app_process", "logcat"}
        ):
            if name != "[":
                fs.add_file(f"/system/bin/{name}", b"\x7fELF\x02\x01\x01", 0o755)
        fs.add_file("/dev/null", b"", 0o666)

        # /proc
        fs.add_generated("/proc/meminfo", self._render_meminfo)
        fs.add_generated("/proc/uptime", self._render_uptime)
        fs.add_generated("/proc/loadavg", self._render_loadavg)
        fs.add_generated("/proc/stat", self._render_stat)
        fs.add_file(
            "/proc/version",
            "Linux version 6.1.75-android14-11-29543898-abS921BXXS3AXI1 "
            "(kleaf@build-host) (Android (10087095, +pgo, +bolt, +lto, -mlgo) "
            "clang version 17.0.2) "
            "#1 SMP PREEMPT Mon Sep 2 08:00:00 UTC 2024\n",
            0o444,
        )
        fs.add_file("/proc/cpuinfo", self._render_cpuinfo(), 0o444)

        # thermal zones
        for index, zone in enumerate(ZONES):
            base = f"/sys/class/thermal/thermal_zone{index}"
            fs.add_file(f"{base}/type", zone.name + "\n", 0o444)
            fs.add_generated(f"{base}/temp", self._zone_reader(zone.name), 0o444, 4096)
            fs.add_file(f"{base}/mode", "enabled\n", 0o644)
            fs.add_file(f"{base}/policy", "step_wise\n", 0o644)

        # cpufreq
        cpu_root = "/sys/devices/system/cpu"
        fs.add_file(f"{cpu_root}/online", "0-9\n", 0o444)
        fs.add_file(f"{cpu_root}/possible", "0-9\n", 0o444)
        fs.add_file(f"{cpu_root}/present", "0-9\n", 0o444)
        for policy in POLICIES:
            base = f"{cpu_root}/cpufreq/{policy.name}"
            cpus = " ".join(str(c) for c in policy.cpus)
            fs.add_file(f"{base}/related_cpus", cpus + "\n", 0o444)
            fs.add_file(f"{base}/affected_cpus", cpus + "\n", 0o444)
            fs.add_file(f"{base}/cpuinfo_max_freq", f"{policy.max_khz}\n", 0o444)
            fs.add_file(f"{base}/cpuinfo_min_freq", f"{policy.min_khz}\n", 0o444)
            fs.add_file(f"{base}/scaling_min_freq", f"{policy.min_khz}\n", 0o644)
            fs.add_file(f"{base}/scaling_governor", "energy_step\n", 0o644)
            fs.add_file(f"{base}/scaling_driver", "exynos_acme\n", 0o444)
            fs.add_generated(
                f"{base}/scaling_cur_freq", self._freq_reader(policy.name, False), 0o444, 4096
            )
            fs.add_generated(
                f"{base}/scaling_max_freq", self._freq_reader(policy.name, True), 0o644, 4096
            )
            fs.add_generated(
                f"{base}/cpuinfo_cur_freq", self._freq_reader(policy.name, False), 0o444, 4096
            )
            for cpu in policy.cpus:
                fs.add_link(f"{cpu_root}/cpu{cpu}/cpufreq", f"../cpufreq/{policy.name}")
                fs.add_file(f"{cpu_root}/cpu{cpu}/online", "1\n", 0o644)

        # battery
        battery = "/sys/class/power_supply/battery"
        fs.add_generated(
            f"{battery}/capacity", lambda: f"{self.model.battery().level}\n".encode(), 0o444, 4096
        )
        fs.add_generated(
            f"{battery}/current_now",
            lambda: f"{self.model.battery().current_ma}\n".encode(),
            0o444,
            4096,
        )
        fs.add_generated(
            f"{battery}/voltage_now",
            lambda: f"{self.model.battery().voltage_mv * 1000}\n".encode(),
            0o444,
            4096,
        )
        fs.add_generated(
            f"{battery}/temp",
            lambda: f"{self.model.battery().temperature_tenths}\n".encode(),
            0o444,
            4096,
        )
        fs.add_generated(f"{battery}/status", self._battery_status, 0o444, 4096)
        fs.add_file(f"{battery}/health", "Good\n", 0o444)
        fs.add_file(f"{battery}/present", "1\n", 0o444)
        fs.add_file(f"{battery}/technology", "Li-ion\n", 0o444)
        fs.add_file(f"{battery}/charge_full_design", "3880000\n", 0o444)
        fs.add_generated(
            f"{battery}/charge_counter",
            lambda: f"{self.model.battery().charge_counter_uah}\n".encode(),
            0o444,
            4096,
        )

    def _zone_reader(self, name: str) -> Callable[[], bytes]:
        def read() -> bytes:
            return f"{round(self.model.temperature(name) * 1000)}\n".encode()

        return read

    def _freq_reader(self, policy_name: str, maximum: bool) -> Callable[[], bytes]:
        policy = next(p for p in POLICIES if p.name == policy_name)

        def read() -> bytes:
            value = self.model.max_freq(policy) if maximum else self.model.cur_freq(policy)
            return f"{value}\n".encode()

        return read

    def _battery_status(self) -> bytes:
        status = self.model.battery().status
        return {2: b"Charging\n", 3: b"Discharging\n", 5: b"Full\n"}.get(status, b"Unknown\n")

    def _render_meminfo(self) -> bytes:
        return "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in self.meminfo().items()).encode()

    def _render_uptime(self) -> bytes:
        up = self.model.uptime()
        return f"{up:.2f} {up * 8.7:.2f}\n".encode()

    def _render_loadavg(self) -> bytes:
        a, b, c = self.loadavg()
        return f"{a:.2f} {b:.2f} {c:.2f} 2/2350 {self._next_pid}\n".encode()

    def _render_stat(self) -> bytes:
        up = self.model.uptime()
        work = self.model.work_seconds
        lines = []
        total_user = total_sys = total_idle = 0
        for cpu in range(10):
            ticks = int(up * 100)
            busy = int(ticks * 0.03 + work * 100 * (0.9 if cpu >= 4 else 0.3))
            user, system = int(busy * 0.7), int(busy * 0.3)
            idle = max(0, ticks - busy)
            total_user += user
            total_sys += system
            total_idle += idle
            lines.append(f"cpu{cpu} {user} 120 {system} {idle} 40 15 8 0 0 0")
        head = f"cpu  {total_user} 1200 {total_sys} {total_idle} 400 150 80 0 0 0"
        tail = [
            f"intr {int(up * 2100)}",
            f"ctxt {int(up * 5200)}",
            f"btime {int(self.model.boot_time)}",
            f"processes {self._next_pid}",
            "procs_running 2",
            "procs_blocked 0",
        ]
        return ("\n".join([head, *lines, *tail]) + "\n").encode()

    @staticmethod
    def _render_cpuinfo() -> str:
        parts = {"Cortex-A520": "0xd80", "Cortex-A720": "0xd81", "Cortex-X4": "0xd82"}
        blocks = []
        for policy in POLICIES:
            for cpu in policy.cpus:
                blocks.append(
                    f"processor\t: {cpu}\nBogoMIPS\t: 52.00\n"
                    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                    "cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm "
                    "dit uscat ilrcpc "
                    "flagm ssbs sb paca pacg dcpodp sve2 flagm2 frint i8mm bf16 bti\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                    f"CPU part\t: {parts[policy.core]}\nCPU revision\t: 1\n"
                )
        return "\n".join(blocks) + "\nHardware\t: Samsung s5e9945\n"
