"""Start and stop virtual S24s: in this process (for a scenario) or in the background (for
``devicelab virtual start``), registered with the local adb server either way, so ``adb
devices`` and every adb client see them as they would see a phone over Wi-Fi.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from virtual_android import VirtualS24, make_phone, shutdown_phone

import devicelab

from .backend import engine_backend


def make_virtual_s24(
    port: int = 0,
    registry: devicelab.Registry | None = None,
    host_binaries: Sequence[str | os.PathLike[str]] = (),
) -> VirtualS24:
    """A virtual S24 with its on-device software (llama-cli, uiautomator2's server, the apps),
    whose models run on devicelab's llama.cpp engine; ``host_binaries`` are host builds of
    llama.cpp's CLI it runs as llama-cli when a client pushes one of them."""
    # A process of its own (`devicelab virtual start`, a test) loads the plugins itself.
    backend = engine_backend(registry or devicelab.load_plugins())
    # devicelab's virtual phone runs what a client pushes, as a phone does (the arm64
    # llama.cpp build of `devicelab android build-llama`), where qemu and bubblewrap exist.
    return make_phone(port, backend=backend, host_binaries=host_binaries, allow_exec=True)


def shutdown(device: VirtualS24) -> None:
    """Stop the device and free its models."""
    shutdown_phone(device)


def adb_client() -> Any:
    """The local adb server (ANDROID_ADB_SERVER_PORT, as adb reads it), started if needed."""
    try:
        import adbutils
    except ImportError:
        import devicelab

        raise devicelab.MissingDependencyError(
            "the virtual S24 is driven through adb: pip install 'devicelab[android]'"
        ) from None
    port = int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    client = adbutils.AdbClient(host="127.0.0.1", port=port)
    try:
        client.server_version()
    except Exception:
        subprocess.run(
            [adbutils.adb_path(), "-P", str(port), "start-server"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    return client


def register_with_adb(serial: str, timeout_s: float = 15.0) -> None:
    """``adb connect SERIAL`` and wait until the server lists it as a ready device."""
    client = adb_client()
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):  # the server may still be starting
            client.connect(serial, timeout=3)
            if any(i.serial == serial and i.state == "device" for i in client.list()):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the adb server did not list {serial} within {timeout_s:g} s")
        time.sleep(0.1)


def unregister_from_adb(serial: str) -> None:
    with contextlib.suppress(Exception):  # already gone is fine
        adb_client().disconnect(serial)


# --- background devices (devicelab virtual start/stop) -----------------------------------


def state_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    path = Path(base) / "devicelab" / "virtual"
    path.mkdir(parents=True, exist_ok=True)
    return path


def running() -> list[dict[str, Any]]:
    """Background virtual S24s whose process is still alive (stale entries are removed)."""
    found = []
    for file in sorted(state_dir().glob("*.json")):
        try:
            entry = json.loads(file.read_text())
            os.kill(int(entry["pid"]), 0)
        except (OSError, ValueError, KeyError):
            file.unlink(missing_ok=True)
            continue
        found.append(entry)
    return found


def start_background(
    port: int = 0, timeout_s: float = 30.0, host_binaries: Sequence[Path] = ()
) -> str:
    """Start a virtual S24 in its own process, register it with adb; its serial."""
    allow = [arg for b in host_binaries for arg in ("--allow-binary", str(b.resolve()))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devicelab_virtual", "--port", str(port), "--allow-exec", *allow],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a Ctrl-C in the terminal must not take it down
    )
    assert proc.stdout is not None
    serial = proc.stdout.readline().strip()
    if not serial:
        proc.kill()
        raise RuntimeError("the virtual S24 did not start (python -m devicelab_virtual)")
    register_with_adb(serial, timeout_s)
    entry = {"serial": serial, "pid": proc.pid, "started": time.time()}
    (state_dir() / f"{serial.replace(':', '_')}.json").write_text(json.dumps(entry))
    return serial


def stop_background(serial: str | None = None) -> list[str]:
    """Stop one background virtual S24 (or all); the serials stopped."""
    stopped = []
    for entry in running():
        if serial is not None and entry["serial"] != serial:
            continue
        unregister_from_adb(entry["serial"])
        with contextlib.suppress(OSError):
            os.kill(int(entry["pid"]), signal.SIGTERM)
        (state_dir() / f"{entry['serial'].replace(':', '_')}.json").unlink(missing_ok=True)
        stopped.append(entry["serial"])
    return stopped
