from __future__ import annotations

from devicelab_host import HostCollector, HostType


def test_host_is_discovered_with_a_fingerprint() -> None:
    [info] = HostType().discover()
    assert info.name == "host" and info.kind == "host"
    assert info.details["ram_mb"] > 0 and info.details["cores_logical"] >= 1
    assert info.details["temperature_sensors"] in ("available", "unavailable")


def test_collector_values_are_in_range_and_never_invented() -> None:
    c = HostCollector()
    c.start()
    s = c.sample()
    assert 1 < s["mem_mb"] < 1_000_000  # type: ignore[operator]
    assert s["mem_available_mb"] > 0  # type: ignore[operator]
    assert 0 <= s["cpu_percent"] <= 100  # type: ignore[operator]
    dev = HostType().open("host", {})
    if dev.info()["temperature_sensors"] == "unavailable":
        assert s["temp_c"] is None
    else:
        assert isinstance(s["temp_c"], float)
