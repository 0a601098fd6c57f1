"""The loadavg collector: real readings where the OS has them, None where it has not."""

from __future__ import annotations

import os

import pytest
from devicelab_example import LoadAvgCollector, loadavg_for

from devicelab import Device


class Phone(Device):
    kind = "android"

    def info(self) -> dict[str, object]:
        return {}


class Host(Device):
    kind = "host"

    def info(self) -> dict[str, object]:
        return {}


def test_applies_to_host_devices_only() -> None:
    assert isinstance(loadavg_for(Host("host", {})), LoadAvgCollector)
    assert loadavg_for(Phone("phone", {})) is None


@pytest.mark.skipif(not hasattr(os, "getloadavg"), reason="no os.getloadavg here")
def test_reads_the_load_averages() -> None:
    sample = LoadAvgCollector().sample()
    assert set(sample) == {"load_1m", "load_5m", "load_15m"}
    assert all(isinstance(v, float) and v >= 0 for v in sample.values())


def test_none_where_the_os_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> tuple[float, float, float]:
        raise OSError("load average unobtainable")

    monkeypatch.setattr(os, "getloadavg", refuse)
    assert LoadAvgCollector().sample() == {"load_1m": None, "load_5m": None, "load_15m": None}
