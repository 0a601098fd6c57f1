"""uiautomator2's on-device server, emulated on the virtual S24.

What `uiautomator2.connect(serial)` (3.x) does on a phone, and what is emulated here:

1. `toybox md5sum /data/local/tmp/u2.jar` (the shell's builtin), then `sync` push of the
   jar when the hash differs (the sync service).
2. `CLASSPATH=/data/local/tmp/u2.jar app_process / com.wetest.uia2.Main -p 9008` in a
   streaming shell: the `app_process` command registered here. It starts a real HTTP server
   (u2rpc.py) on a free loopback port of the host and bridges the device's `tcp:9008` to it
   (`expose_port`), then lives until the shell stream is closed or the process is killed.
3. `GET /ping` -> `pong` over `tcp:9008` until ready, then one `POST /jsonrpc/0` per call.

The server answers from the device's `DeviceScreen` (screen.py): the windows on the display,
built as `UiNode` trees by the apps (apps.py), dumped as uiautomator does (hierarchy.py),
searched with uiautomator2's selectors (selector.py) and drawn by render.py.
"""

from __future__ import annotations

import posixpath

from ..device import VirtualS24
from ..shell.interpreter import CommandContext
from .screen import DeviceScreen, screen_of
from .u2rpc import U2Server

# DeviceScreen and screen_of are re-exported for the modules that reach the screen through
# the server's module (apps.py).
__all__ = ["U2_MAIN_CLASS", "DeviceScreen", "app_process", "install_uiautomator", "screen_of"]

U2_MAIN_CLASS = "com.wetest.uia2.Main"
U2_JAR = "/data/local/tmp/u2.jar"
DEFAULT_PORT = 9008


def _main_class(args: list[str]) -> tuple[str, list[str]]:
    """app_process [vm-options] cmd-dir [options] start-class-name [main-options]."""
    rest = list(args)
    while rest and rest[0].startswith("-"):  # vm options
        rest.pop(0)
    if rest:
        rest.pop(0)  # cmd-dir (u2 passes "/")
    while rest and rest[0].startswith("--"):  # --nice-name=..., --application
        rest.pop(0)
    if not rest:
        return "", []
    return rest[0], rest[1:]


def _server_port(main_args: list[str]) -> int:
    for i, arg in enumerate(main_args):
        if arg in ("-p", "--port") and i + 1 < len(main_args) and main_args[i + 1].isdigit():
            return int(main_args[i + 1])
    return DEFAULT_PORT


def app_process(ctx: CommandContext) -> int:
    """`app_process`: only uiautomator2's server class can be started on this device."""
    main, main_args = _main_class(ctx.argv[1:])
    if not main:
        ctx.error("Usage: app_process [java-options] cmd-dir start-class-name [options]\n")
        return 1
    classpath = [p for p in ctx.env.get("CLASSPATH", "").split(":") if p]
    if main != U2_MAIN_CLASS or not any(
        posixpath.basename(p) == "u2.jar" and ctx.fs.is_file(p) for p in classpath
    ):
        ctx.error(
            f'Exception in thread "main" java.lang.ClassNotFoundException: {main}\n'
            f"\tat java.lang.Class.classForName(Native Method)\n"
        )
        return 1
    port = _server_port(main_args)
    screen = screen_of(ctx.device)
    server = U2Server(screen)
    with screen.lock:
        if port in screen.servers:
            server.close()
            ctx.write("[server] INFO: [UiAutomator2Server] Starting Server\n")
            ctx.error(
                "java.net.BindException: Address already in use\n"
                "\tat fi.iki.elonen.NanoHTTPD.start(NanoHTTPD.java:2204)\n"
            )
            return 1
        screen.servers[port] = server
    server.start()
    ctx.device.expose_port(port, server.port)
    try:
        ctx.write("[server] INFO: [UiAutomator2Server] Starting Server\n")
        ctx.cancelled.wait()  # until the stream is closed or the process killed
        return 0
    finally:
        with screen.lock:
            if screen.servers.get(port) is server:
                del screen.servers[port]
                ctx.device.unexpose_port(port)
        server.close()


def install_uiautomator(dev: VirtualS24) -> None:
    """Let `uiautomator2.connect(dev.serial)` work: register `app_process` on the device."""
    screen_of(dev)
    dev.add_command("app_process", app_process)
