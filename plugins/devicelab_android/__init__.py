"""Android phones over ADB (adbutils) and their apps through uiautomator2.

Registers the ``android`` device kind, ``llama.cpp`` for Android (the user's arm64
``llama-cli`` run over adb shell) and ``app`` (a model inside an app, measured through its
UI with declarative steps; built-in profiles for MLC-LLM's MLCChat and the DocAssist app).
Needs ``pip install 'devicelab[android]'``; imports happen when a phone is used.
"""

from __future__ import annotations

from collections.abc import Callable

import click

import devicelab
from devicelab import DeviceType, Engine


@devicelab.hookimpl
def devicelab_register_devices(
    register: Callable[[DeviceType], None], registry: devicelab.Registry
) -> None:
    from .device import AndroidType

    register(AndroidType(registry))


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    from .app import AppEngine
    from .llamacli import LlamaCliEngine

    register(LlamaCliEngine)
    register(AppEngine)


@devicelab.hookimpl
def devicelab_register_commands(cli: click.Group) -> None:
    @cli.group()
    def android() -> None:
        """Android phones: tools for the phone side."""

    @android.command(name="build-llama")
    @click.option(
        "--device",
        "profile",
        metavar="PROFILE",
        help="A device profile (devices/NAME.toml, or a path) whose [device.facts] arm_arch "
        "sets the target; default: a generic Armv8.2-A phone.",
    )
    @click.option("--arch", help="The target's -march (e.g. armv8.2-a+dotprod+fp16).")
    def build_llama(profile: str | None, arch: str | None) -> None:
        """Cross-build llama.cpp's llama-completion for arm64 phones (static, no NDK) from
        the installed llama-cpp-python's sources, once, and print its path."""
        import sys

        from . import crossbuild

        if profile is not None and arch is not None:
            raise devicelab.UsageError("give --device or --arch, not both.")
        target = arch or crossbuild.GENERIC_ARCH
        if profile is not None:
            target = crossbuild.profile_arch(crossbuild.read_profile(profile))
        path = crossbuild.build_arm64(target, lambda line: click.echo(line, err=True), version=None)
        info = crossbuild.build_info_of(path) or {}
        click.echo(
            f"llama.cpp {str(info.get('llama_cpp_commit', '?'))[:12]} for {info.get('arch')}, "
            f"{info.get('size_bytes', 0) / 1e6:.1f} MB",
            err=True,
        )
        click.echo(str(path))
        sys.stdout.flush()
