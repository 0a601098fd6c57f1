from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

from devicelab_host import HostCollector, HostType, cpu_counters


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


def _cpu_child(seconds: float) -> subprocess.Popen[bytes]:
    code = f"import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def test_engine_cpu_counts_this_process_and_its_children() -> None:
    c = HostCollector()
    child = _cpu_child(0.4)
    try:
        before = c.sample()  # the first sample finds the child
        child.wait(timeout=60)
        after = c.sample()
    finally:
        child.kill()
    # The child ran 0.4 s of CPU, waited for, so it now counts in this process's children.
    engine = after["engine_cpu_s"] - before["engine_cpu_s"]  # type: ignore[operator]
    assert engine >= 0.35
    assert after["cpu_total_s"] > before["cpu_total_s"] >= before["cpu_busy_s"] > 0  # type: ignore[operator]


def test_cpu_counters_split_idle_from_busy() -> None:
    times = namedtuple(
        "scputimes", "user nice system idle iowait irq softirq steal guest guest_nice"
    )(10.0, 1.0, 4.0, 80.0, 2.0, 0.5, 0.5, 2.0, 3.0, 0.0)
    # guest is already in user; iowait is idle; steal is busy
    assert cpu_counters(times) == (100.0, 18.0)


def test_cpu_consumers_name_a_busy_process_outside_this_process_tree(tmp_path: Path) -> None:
    script = tmp_path / "hog.py"
    script.write_text(
        "import ctypes\nctypes.CDLL(None).prctl(15, b'dl-host-hog', 0, 0, 0)\nwhile True:\n"
        "    pass\n"
    )
    out = subprocess.run(
        ["sh", "-c", '"$0" "$1" >/dev/null 2>&1 & echo $!', sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout)
    try:
        time.sleep(0.3)
        top = dict(HostType().open("host", {}).cpu_consumers(1.0))
    finally:
        os.kill(pid, signal.SIGKILL)
    assert 0 < top["dl-host-hog"] <= 100
