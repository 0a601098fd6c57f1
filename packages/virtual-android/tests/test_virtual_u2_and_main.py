"""uiautomator2's connect path up to its JSON-RPC server, and `virtual-android serve`."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import adbutils
import pytest
import uiautomator2 as u2
from uiautomator2.exceptions import LaunchUiAutomationError
from uiautomator2.utils import with_package_resource
from virtual_android.device import VirtualS24
from virtual_android.pytest_plugin import assert_serves_until_sigterm
from virtual_android.shell.interpreter import CommandContext


def _u2_jar_md5() -> str:
    with with_package_resource("assets/u2.jar") as jar:
        return hashlib.md5(Path(jar).read_bytes()).hexdigest()


def test_u2_connect_without_server_pushes_jar_then_fails(device: adbutils.AdbDevice) -> None:
    with pytest.raises(LaunchUiAutomationError):
        u2.connect(device)
    # u2 checked with `toybox md5sum`, pushed the jar, and started app_process (not emulated here).
    assert _u2_jar_md5() in device.shell(["toybox", "md5sum", "/data/local/tmp/u2.jar"])


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"pong" if self.path == "/ping" else b"?"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_u2_connect_with_an_emulated_app_process(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24, wait
) -> None:
    started: list[list[str]] = []

    def app_process(ctx: CommandContext) -> int:
        """Stands in for the u2 server: a host HTTP server behind the device's tcp:9008."""
        started.append(ctx.argv)
        assert ctx.env.get("CLASSPATH") == "/data/local/tmp/u2.jar"
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ctx.device.expose_port(int(ctx.argv[-1]), server.server_address[1])
        try:
            ctx.stdout.write("[server] INFO: [UiAutomator2Server] Starting Server\n")
            ctx.cancelled.wait()
            return 0
        finally:
            ctx.device.unexpose_port(int(ctx.argv[-1]))
            server.shutdown()
            server.server_close()

    virtual_s24.add_command("app_process", app_process)
    d = u2.connect(device)
    assert started == [["app_process", "/", "com.wetest.uia2.Main", "-p", "9008"]]
    assert device.shell("pidof app_process").isdigit()
    d.stop_uiautomator()
    wait(lambda: device.shell2("pidof app_process").returncode == 1, 10)


def test_serve_runs_one_phone_in_the_foreground_until_sigterm(
    adb_server: adbutils.AdbClient,
) -> None:
    assert_serves_until_sigterm(
        adb_server, [sys.executable, "-m", "virtual_android", "serve", "--port", "0"]
    )


def test_the_console_script_refuses_an_emulator_port() -> None:
    script = Path(sys.executable).with_name("virtual-android")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "virtual_android"]
    result = subprocess.run(
        [*command, "serve", "--port", "5555"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "5555-5585" in result.stderr and "--port" in result.stderr
