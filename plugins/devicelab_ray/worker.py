"""``devicelab worker start|stop``: join this host, and the phones on it, to a Ray cluster."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys

import click

import devicelab
from devicelab import DeviceInfo

from . import resources
from .executor import require_ray


def attached_devices() -> list[DeviceInfo]:
    """What every loaded device plugin finds on this host now."""
    registry = devicelab.load_plugins()
    found: list[DeviceInfo] = []
    for _, dtype in registry.devices.values():
        found.extend(dtype.discover())
    return found


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


@click.group()
def worker() -> None:
    """Join this host and its attached devices to a Ray cluster (pip install 'devicelab[ray]')."""


@worker.command()
@click.option("--address", required=True, metavar="HEAD:PORT", help="The Ray head's address.")
@click.option("--name", "host", default=None, help="This host's label in records [its hostname].")
@click.option(
    "--num-cpus", type=int, default=1, show_default=True, help="CPUs offered to Ray tasks."
)
@click.option("--block", is_flag=True, help="Stay in the foreground until stopped.")
@click.option(
    "--ray-args",
    default="",
    metavar="ARGS",
    help="More `ray start` options, e.g. ports when several workers share one host.",
)
def start(address: str, host: str | None, num_cpus: int, block: bool, ray_args: str) -> None:
    """Start a Ray node that joins ADDRESS and advertises this host's devices.

    Each attached device becomes a Ray custom resource (devicelab-device:NAME, and
    devicelab-serial:SERIAL / devicelab-model:MODEL where known), plus devicelab-host:NAME for
    the host, so the ray executor places each device's worker here.
    """
    require_ray()
    label = host or socket.gethostname()
    found = attached_devices()
    offer = resources.for_devices(found, label)
    for info in found:
        click.echo(f"devicelab: offering {info.name} ({info.kind}): {info.description}")
    args = ["start", "--address", address, "--resources", json.dumps(offer)]
    args += ["--num-cpus", str(num_cpus), "--disable-usage-stats"]
    args += shlex.split(ray_args)
    if block:
        args.append("--block")
    try:
        proc = subprocess.run(
            _ray_cli(*args), stdin=subprocess.DEVNULL, env=os.environ.copy(), check=False
        )
    except KeyboardInterrupt:
        return
    if proc.returncode != 0 and not block:
        raise devicelab.UsageError(
            f"`ray start --address {address}` failed (exit {proc.returncode}); see its output "
            "above. Check that the head runs (`ray start --head` on it) and that its port is "
            "reachable from this host."
        )


@worker.command()
def stop() -> None:
    """Leave the cluster: stop the Ray processes of this host (`ray stop`)."""
    require_ray()
    subprocess.run(_ray_cli("stop"), stdin=subprocess.DEVNULL, check=False)
