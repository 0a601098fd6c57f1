"""A whole phone: the device with its on-device software, and its orderly shutdown."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from .apps.apps import apps_of, install_apps
from .apps.u2server import install_uiautomator
from .device import VirtualS24
from .inference.backend import BackendFactory
from .inference.llamacli import install_llama_cli
from .inference.llm import release_llms, use_backend
from .inference.realcli import allow_host_binaries
from .system.elfexec import allow_exec as enable_exec

__all__ = ["make_phone", "shutdown_phone"]


def make_phone(
    port: int = 0,
    *,
    backend: BackendFactory | None = None,
    host_binaries: Sequence[str | os.PathLike[str]] = (),
    allow_exec: bool = False,
) -> VirtualS24:
    """A virtual S24 with llama-cli, uiautomator2's server and the apps, not yet started.

    ``backend`` makes the models its apps and llama-cli run (default: llama-cpp-python, if
    installed, looked up when a model is first needed). ``host_binaries`` are host builds of
    llama.cpp's CLI that run, in place of the emulated llama-cli, when a client pushes one
    of them and runs it (see :mod:`.inference.realcli`). ``allow_exec`` lets the phone run
    pushed arm64 programs under qemu in a sandbox (see :mod:`.system.elfexec`; off where
    qemu or bubblewrap is missing, with the reason in the phone's log).
    """
    device = VirtualS24(port=port)
    if backend is not None:
        use_backend(device, backend)
    install_llama_cli(device)
    allow_host_binaries(device, host_binaries)
    if allow_exec:
        enable_exec(device)
    install_uiautomator(device)
    install_apps(device)
    return device


def shutdown_phone(device: VirtualS24) -> None:
    """Stop the device and free its models (apps first: their models close as they stop)."""
    with contextlib.suppress(LookupError):  # no apps were installed
        for app in apps_of(device).all():
            app.force_stop()
    release_llms(device)
    device.stop()
