"""The Ray custom resources a worker advertises for its devices, and how a plan finds them.

A worker puts one unit of ``devicelab-device:NAME`` per attached device, plus
``devicelab-serial:SERIAL`` and ``devicelab-model:MODEL`` where the device plugin reports
them, and one ``devicelab-host:LABEL`` for the host. A trial asks for one unit of the
resource that names the scenario's device, so it lands on a host where that device is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from devicelab import DeviceInfo

PREFIX = "devicelab-"
HOST = PREFIX + "host:"
DEVICE = PREFIX + "device:"
SERIAL = PREFIX + "serial:"
MODEL = PREFIX + "model:"


def for_devices(devices: Iterable[DeviceInfo], host: str) -> dict[str, float]:
    """The resources of one worker host and the devices attached to it."""
    out: dict[str, float] = {HOST + host: 1.0}
    for info in devices:
        keys = {DEVICE + info.name}
        serial = info.details.get("serial")
        if serial and serial != info.name:
            keys.add(SERIAL + str(serial))
        model = info.details.get("model")
        if model:
            keys.add(MODEL + str(model))
        for key in keys:
            out[key] = out.get(key, 0.0) + 1.0
    return out


def candidates(device: str) -> list[str]:
    """The resources that can stand for a scenario's ``[device] name``, most specific first."""
    return [SERIAL + device, DEVICE + device, MODEL + device]


def pick(device: str, available: Mapping[str, float]) -> str | None:
    """The resource the cluster offers for ``device``, if any."""
    for key in candidates(device):
        if available.get(key, 0) >= 1:
            return key
    return None


def host_of(node_resources: Mapping[str, float], fallback: str) -> str:
    """The host label a worker advertised (its hostname unless ``--name`` was given)."""
    for key in node_resources:
        if key.startswith(HOST):
            return key[len(HOST) :]
    return fallback


def offered(available: Mapping[str, float]) -> list[str]:
    """The devicelab resources the cluster has, for error messages."""
    return sorted(k for k in available if k.startswith(PREFIX) and not k.startswith(HOST))
