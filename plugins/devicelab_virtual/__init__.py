"""devicelab's adapter for virtual-android's virtual Samsung Galaxy S24 (SM-S921B).

The phone itself (the ADB wire protocol, its shell, filesystem, apps and llama-cli) is the
``virtual-android`` library in packages/virtual-android; this plugin makes it a devicelab
device. It registers the ``virtual`` device kind (``[device] name = "virtual-s24"`` starts one
for the run and stops it after; the Android plugin's engines drive it), the ``devicelab virtual
start|stop|list`` commands for a virtual S24 that outlives one run, and the ``paced`` engine.
The phone's apps and llama-cli run SmolLM2 on devicelab's own llama.cpp engine (backend.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

import devicelab
from devicelab import Device, DeviceInfo, DeviceType, Engine, ScenarioError

NAME = "virtual-s24"


class VirtualType(DeviceType):
    kind = "virtual"
    description = "a virtual Galaxy S24 on this host, started for the run"

    def __init__(self, registry: devicelab.Registry) -> None:
        # The virtual phone is driven by the android device kind, found here.
        self.registry = registry
        self._launched: dict[int, Any] = {}

    @property
    def engine_kind(self) -> str:
        return "android"

    def discover(self) -> list[DeviceInfo]:
        return [DeviceInfo(NAME, self.kind, "virtual Galaxy S24 (SM-S921B), started on demand")]

    def accepts(self, name: str) -> bool:
        return name == NAME

    def _android(self) -> DeviceType:
        registry = self.registry
        if "android" not in registry.devices:
            raise ScenarioError(
                "the virtual S24 is driven by the Android plugin, which is not loaded. "
                "Install it with pip install 'devicelab[android]' (and check "
                "DEVICELAB_PLUGINS / DEVICELAB_DISABLE_PLUGINS)."
            )
        return registry.devices["android"][1]

    def check(self, name: str, profile: Mapping[str, Any]) -> None:
        self._android()
        options = profile.get("options", {})
        unknown = set(options) - {"telemetry_interval_s", "host_binaries", "heat_time_scale"}
        if unknown:
            raise ScenarioError(
                f"unknown virtual-s24 option(s) {', '.join(sorted(unknown))}; "
                "known: telemetry_interval_s, host_binaries, heat_time_scale."
            )
        scale = options.get("heat_time_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ScenarioError(
                f"[device.options] heat_time_scale must be a number above 0, not {scale!r}: "
                "how many times faster than real time the phone heats and cools (30 shows in "
                "20 s what a phone does in 10 minutes)."
            )
        binaries = options.get("host_binaries", [])
        if not isinstance(binaries, list) or not all(isinstance(b, str) for b in binaries):
            raise ScenarioError(
                "[device.options] host_binaries must be a list of paths to host builds of "
                'llama.cpp\'s CLI, e.g. host_binaries = ["/path/to/llama-completion"] '
                "(python -m devicelab_android.hostcli builds one and prints its path)."
            )
        for binary in binaries:
            path = Path(binary)
            if not path.is_file() or not os.access(path, os.X_OK):
                raise ScenarioError(
                    f"[device.options] host_binaries: {binary} is not an executable file. "
                    "Build one with python -m devicelab_android.hostcli (it prints the path)."
                )

    def open(self, name: str, profile: Mapping[str, Any]) -> Device:
        from .launch import make_virtual_s24, register_with_adb, shutdown

        own = dict(profile.get("options", {}))
        binaries = own.pop("host_binaries", [])
        phone = make_virtual_s24(registry=self.registry, host_binaries=binaries)
        phone.model.heat_time_scale = float(own.pop("heat_time_scale", 1.0))
        phone.start()
        try:
            register_with_adb(phone.serial)
            options = {"serial": phone.serial, **own}
            device = self._android().open(phone.serial, {**profile, "options": options})
        except BaseException:
            shutdown(phone)
            raise
        device.name = name
        self._launched[id(device)] = phone
        return device

    def release(self, device: Device) -> None:
        from .launch import shutdown, unregister_from_adb

        phone = self._launched.pop(id(device), None)
        if phone is not None:
            unregister_from_adb(phone.serial)
            shutdown(phone)


@devicelab.hookimpl
def devicelab_register_devices(
    register: Callable[[DeviceType], None], registry: devicelab.Registry
) -> None:
    register(VirtualType(registry))


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    from .paced import PacedEngine  # phone-like timing without the host's CPU (benchmarks)

    register(PacedEngine)


@devicelab.hookimpl
def devicelab_register_commands(cli: click.Group) -> None:
    @cli.group()
    def virtual() -> None:
        """Virtual Galaxy S24s that outlive one run (registered with the local adb server)."""

    @virtual.command()
    @click.option("--port", type=int, default=0, help="Loopback port (default: any free one).")
    @click.option(
        "--allow-binary",
        "binaries",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A host build of llama.cpp's CLI that runs as the phone's llama-cli when a "
        "client pushes the same file (repeatable; python -m devicelab_android.hostcli "
        "builds one).",
    )
    def start(port: int, binaries: tuple[Path, ...]) -> None:
        """Start a virtual S24 in the background and print its serial."""
        from .launch import start_background

        try:
            click.echo(start_background(port, host_binaries=binaries))
        except RuntimeError as exc:
            raise devicelab.UsageError(f"{exc}. Is the port free? Try another --port.") from None

    @virtual.command()
    @click.argument("serial", required=False)
    def stop(serial: str | None) -> None:
        """Stop the virtual S24 SERIAL (all of them when no serial is given)."""
        from .launch import stop_background

        stopped = stop_background(serial)
        if serial is not None and not stopped:
            raise devicelab.UsageError(
                f"no running virtual S24 has the serial {serial}; "
                "`devicelab virtual list` shows them."
            )
        for s in stopped:
            click.echo(f"stopped {s}")

    @virtual.command(name="list")
    def list_() -> None:
        """The virtual S24s running in the background."""
        from .launch import running

        for entry in running():
            click.echo(f"{entry['serial']}\tpid {entry['pid']}")
