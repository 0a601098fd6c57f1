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
from types import TracebackType
from typing import Generic, TypeVar, cast

from .display import Frame, ScreenSource
from .fs.android import build_system_tree, install_procfs, install_sysfs
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
from .system.activity import ActivityService
from .system.battery import BatteryService
from .system.display import DisplayService, SurfaceFlingerService
from .system.input import InputEvent, InputService
from .system.logd import LogBuffer, logd_commands
from .system.meminfo import CpuInfoService, MemInfoService
from .system.packages import PackageManager
from .system.pm import package_commands
from .system.power import PowerService
from .system.processes import ProcessInfo, ProcessTable
from .system.properties import PROPS, PropertyService
from .system.service import ServiceManager
from .system.settings import SettingsService
from .system.thermal import ThermalService
from .system.tools import system_tools
from .system.window import WindowService
from .transport.transport import Stream, StreamClosed, Transport, TransportServer

log = logging.getLogger(__name__)

__all__ = ["CommandContext", "CommandHandler", "InputEvent", "VirtualS24"]

EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these as emulators
SHUTDOWN_SECONDS = 0.5  # from `reboot` to the transport dropping

T = TypeVar("T")
Executor = Callable[["VirtualS24", str, bytes], "tuple[CommandHandler | None, str] | None"]


class _Forward(Generic[T]):
    """An attribute of the device that is a service's state (``device.props`` is
    ``device.properties.props``), read and written where callers have always found it."""

    def __init__(self, service: str, name: str) -> None:
        self._service = service
        self._name = name

    def __get__(self, device: VirtualS24, owner: type | None = None) -> T:
        return cast(T, getattr(getattr(device, self._service), self._name))

    def __set__(self, device: VirtualS24, value: T) -> None:
        setattr(getattr(device, self._service), self._name, value)


class VirtualS24:
    """A virtual Galaxy S24 (SM-S921B) speaking the adbd side of ADB on loopback TCP."""

    BANNER = (
        "device::ro.product.name=e1sxxx;ro.product.model=SM-S921B;ro.product.device=e1s;"
        "features=shell_v2,cmd"
    )
    PHYSICAL_SIZE = WindowService.PHYSICAL_SIZE
    PHYSICAL_DENSITY = WindowService.PHYSICAL_DENSITY
    HOST = "127.0.0.1"

    def __init__(self, port: int = 0, *, boot_seconds: float = 2.0) -> None:
        if port in EMULATOR_PORTS:
            raise ValueError(
                f"port {port} is in 5555-5585, which the adb server probes as emulators"
            )
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.RLock()
        self.model = PhoneModel()
        self.fs = VirtualFS()
        self.boot_seconds = boot_seconds  # how long `reboot` keeps the phone away
        self.boots = 1
        self.logs = LogBuffer()
        self.processes = ProcessTable(self.fs, self.model)
        # The system services, built as system_server builds them and found by name.
        self.properties = PropertyService()
        self.settings_provider = SettingsService()
        self.power = PowerService(self.model)
        self.packages = PackageManager(self.fs, self.logs)
        self.activity = ActivityService(self.processes, self.packages, self.logs)
        self.window = WindowService(self.settings_provider, self.power, self.activity)
        self.input = InputService(self.power)
        self.display = DisplayService(self.window, self.power, self.properties)
        self.thermal = ThermalService(self.model, self.logs, self.processes)
        self.services = ServiceManager()
        for service in (
            BatteryService(self.model),
            self.packages,
            self.thermal,
            MemInfoService(self.processes, self.model),
            CpuInfoService(self.processes, self.model),
            self.display,
            self.power,
            SurfaceFlingerService(self.window),
            self.window,
            self.activity,
            self.input,
            self.settings_provider,
            self.properties,
        ):
            self.services.add(service)
        self._reboot_hooks: list[Callable[[], None]] = []
        self._rebooting = threading.Event()
        self._reverse: dict[str, tuple[Transport, str]] = {}  # device spec -> (transport, host)
        self._builtins: dict[str, CommandHandler] = builtin_commands()
        self._builtins.update(self.services.commands())
        self._builtins.update(logd_commands(self.logs, self.thermal.log_hottest))
        self._builtins.update(package_commands(self.packages))
        self._builtins.update(system_tools())
        self._extensions: dict[str, CommandHandler] = {}
        # Asked, in order, before the shell runs a file of the phone: a handler for it, the
        # shell's refusal, or None (see system.elfexec, which runs pushed arm64 programs).
        self.executors: list[Executor] = []
        self._merged_commands: dict[str, CommandHandler] | None = None
        self._exposed: dict[int, int] = {}
        self._server = TransportServer(self.BANNER.encode(), self._open, self._transport_closed)
        self._started = False
        self._stopped = False
        build_system_tree(self.fs, PROPS, self._builtins)
        install_procfs(self.fs, self.processes)
        install_sysfs(self.fs, self.model)
        self.processes.start_system_processes(0)
        self._log_boot()

    # -- the services' state, where callers have always found it -----------------
    props = _Forward[dict[str, str]]("properties", "props")
    settings = _Forward[dict[str, dict[str, str]]]("settings_provider", "tables")
    # The apps' DeviceScreen puts itself here (apps.u2server.screen_of).
    screen_source = _Forward[ScreenSource | None]("display", "screen_source")
    size_override = _Forward[tuple[int, int] | None]("window", "size_override")
    density_override = _Forward[int | None]("window", "density_override")

    def system_pid(self, name: str) -> int:
        """The pid of a system daemon (system_server, surfaceflinger, ...) in this boot."""
        return self.processes.system_pid(name)

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
        """The display's rotation, 0-3 (Surface.ROTATION_0..270)."""
        return self.window.rotation()

    def set_rotation(self, rotation: int | None) -> None:
        """Lock the display at `rotation` (0-3), or let the sensor decide again (None)."""
        self.window.set_rotation(rotation)

    def display_size(self) -> tuple[int, int]:
        """The logical display size in the current rotation."""
        return self.window.display_size()

    @property
    def screen_on(self) -> bool:
        return self.power.screen_on

    def set_screen_on(self, on: bool) -> None:
        self.power.set_screen_on(on)

    def press_power_key(self, keycode: int) -> bool:
        """POWER (26) toggles the screen, SLEEP (223) and WAKEUP (224) set it; False for
        any other key."""
        return self.power.press_power_key(keycode)

    def capture_screen(self) -> Frame:
        """The picture on the display now: what screencap and the framebuffer service send."""
        return self.display.capture_screen()

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
        self.properties.reboot()
        self.processes.reset_pids()
        self.logs.clear()
        self.model.boot_time = time.time()
        self.model.boot_monotonic = time.monotonic()
        time.sleep(self.boot_seconds)
        with self._lock:
            stopped = self._stopped
        if not stopped:
            self.set_screen_on(True)  # a phone boots to a lit screen
            self.processes.start_system_processes(shift=23 * (self.boots - 1))
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
        work of no listed process, as a kernel thread's). A killed process does no more work:
        the host may still be finishing its prompt or token, the phone would not be."""
        if pid is not None and self.processes.process(pid) is None:
            return
        self.model.add_work(seconds, intensity)
        if pid is not None and seconds > 0:
            self.processes.add_work(pid, seconds)

    def temperatures(self) -> dict[str, float]:
        """Current zone temperatures in degrees C (what thermal_zone*/temp reports / 1000)."""
        return self.model.temperatures()

    @property
    def input_events(self) -> list[InputEvent]:
        """Events recorded from `input keyevent|tap|swipe|text`, oldest first."""
        return self.input.events

    def record_input(
        self, kind: str, args: tuple[float | int | str, ...], source: str, longpress: bool = False
    ) -> None:
        self.input.record(kind, args, source, longpress)

    # -- processes (the table is self.processes) -----------------------------------
    def register_process(self, name: str, pid: int | None = None) -> int:
        """Add an emulated process (visible to ps, pidof, /proc/PID/status); returns its pid."""
        return self.processes.register_process(name, pid)

    def set_process_rss(self, pid: int, rss_kb: int) -> None:
        """Set a process's resident set size (VmRSS); VmHWM keeps the peak."""
        self.processes.set_rss(pid, rss_kb)

    def kill_process(self, pid: int) -> None:
        """Kill a process as the low-memory killer would (no-op when it is gone)."""
        self.processes.kill(pid)

    def unregister_process(self, pid: int) -> None:
        self.processes.remove(pid)

    def process_list(self) -> list[ProcessInfo]:
        return self.processes.process_list()

    def register_session(self, command: str, token: CancelToken) -> int:
        return self.processes.register_session(command, token)

    def register_job(self, name: str, ppid: int, token: CancelToken) -> int:
        """A background job of a shell session (`cmd &`): a process `kill` can stop."""
        return self.processes.register_job(name, ppid, token)

    def kill_from_shell(self, pid: int) -> str:
        return self.processes.kill_from_shell(pid)

    def process(self, pid: int) -> ProcessInfo | None:
        """The live process ``pid`` (None once it is gone)."""
        return self.processes.process(pid)

    @property
    def next_pid(self) -> int:
        return self.processes.next_pid

    @property
    def _processes(self) -> dict[int, ProcessInfo]:
        # tests/plugins/devicelab_android/test_runs_on_virtual_s24.py still reads this
        # (outside this package); drop it once that test calls process_list().
        return {p.pid: p for p in self.processes.process_list()}

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
            pid = self.processes.spawn(
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
        return self.processes.meminfo()

    def loadavg(self) -> tuple[float, float, float]:
        return self.processes.loadavg()
