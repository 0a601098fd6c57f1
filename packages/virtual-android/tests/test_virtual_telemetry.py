"""Telemetry as a benchmark reads it: dumpsys, /proc, /sys, and the heat model behind them."""

from __future__ import annotations

import re
import time

import adbutils
from virtual_android.device import VirtualS24

TEMPERATURE_RE = re.compile(
    r"Temperature\{mValue=(?P<value>-?[\d.]+), mType=(?P<type>\d+), "
    r"mName=(?P<name>\w+), mStatus=(?P<status>\d)\}"
)
ZONE_NAMES = ["BIG", "MID", "LITTLE", "G3D", "ISP", "NPU", "AP", "BAT", "SKIN"]


def _zones(device: adbutils.AdbDevice) -> dict[str, int]:
    """What a sampler does: enumerate the zones, never hard-code their numbers."""
    out = device.shell("for z in /sys/class/thermal/thermal_zone*; do cat $z/type $z/temp; done")
    lines = out.splitlines()
    return {lines[i]: int(lines[i + 1]) for i in range(0, len(lines), 2)}


def test_thermal_zones_enumerate(device: adbutils.AdbDevice) -> None:
    zones = _zones(device)
    assert sorted(zones) == sorted(ZONE_NAMES)
    for name, milli in zones.items():
        assert 25_000 <= milli < 45_000, (name, milli)


def test_temperatures_rise_with_work_and_relax(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24, wait
) -> None:
    before = _zones(device)
    virtual_s24.add_work(30.0, 1.0)
    after = _zones(device)
    for name in ZONE_NAMES:
        assert after[name] > before[name], name
    rise = {name: after[name] - before[name] for name in ZONE_NAMES}
    assert rise["BIG"] > rise["SKIN"] > 0
    assert rise["BIG"] > rise["BAT"] > 0
    peak = after["BIG"]
    wait(lambda: _zones(device)["BIG"] < peak - 100, 10)


def test_cpufreq_follows_load_and_throttles(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24
) -> None:
    base = "/sys/devices/system/cpu/cpufreq/policy9"
    idle = int(device.shell(f"cat {base}/scaling_cur_freq"))
    assert idle < 3_207_000
    assert device.shell(f"cat {base}/scaling_max_freq") == "3207000"
    virtual_s24.add_work(120.0, 1.0)
    busy = int(device.shell(f"cat {base}/scaling_cur_freq"))
    capped = int(device.shell(f"cat {base}/scaling_max_freq"))
    assert busy > idle
    assert capped < 3_207_000 and busy <= capped
    assert device.shell("cat /sys/devices/system/cpu/cpu9/cpufreq/cpuinfo_max_freq") == "3207000"
    assert device.shell("cat /sys/devices/system/cpu/cpufreq/policy0/related_cpus") == "0 1 2 3"


def test_dumpsys_thermalservice(device: adbutils.AdbDevice, virtual_s24: VirtualS24) -> None:
    out = device.shell("dumpsys thermalservice")
    assert re.search(r"^Thermal Status: 0$", out, re.M)
    current = out.split("Current temperatures from HAL:")[1].split("Current cooling devices")[0]
    sensors = {m["name"]: m for m in TEMPERATURE_RE.finditer(current)}
    assert {"AP", "BAT", "SKIN", "USB", "PA"} <= set(sensors)
    assert sensors["BAT"]["type"] == "2" and sensors["SKIN"]["type"] == "3"
    assert all(m["status"] == "0" for m in sensors.values())
    virtual_s24.add_work(300.0, 1.0)
    hot = device.shell("dumpsys thermalservice")
    status = int(re.search(r"^Thermal Status: (\d)$", hot, re.M).group(1))  # type: ignore[union-attr]
    assert 1 <= status <= 6
    skin = next(m for m in TEMPERATURE_RE.finditer(hot) if m["name"] == "SKIN")
    assert float(skin["value"]) > float(sensors["SKIN"]["value"])
    assert int(skin["status"]) >= 1


def test_dumpsys_battery_and_sysfs(device: adbutils.AdbDevice, virtual_s24: VirtualS24) -> None:
    info = device.battery()
    assert info.level is not None and 0 < info.level <= 100
    assert info.status == 3 and info.usb_powered is False
    assert info.voltage is not None and 3400 < info.voltage < 4500
    assert info.temperature is not None and 25 < info.temperature < 40
    out = device.shell("dumpsys battery")
    assert out.startswith("Current Battery Service state:")
    current = int(re.search(r"^  current now: (-?\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert current < 0
    sysfs = "/sys/class/power_supply/battery"
    assert int(device.shell(f"cat {sysfs}/capacity")) == info.level
    assert device.shell(f"cat {sysfs}/status") == "Discharging"
    assert int(device.shell(f"cat {sysfs}/voltage_now")) == info.voltage * 1000
    level = info.level
    virtual_s24.add_work(600.0, 1.0)
    assert device.battery().level < level
    device.shell("dumpsys battery set usb 1")
    charging = device.battery()
    assert (charging.usb_powered, charging.status) == (True, 2)
    device.shell("dumpsys battery reset")
    assert device.battery().usb_powered is False


def test_meminfo_and_process_memory(device: adbutils.AdbDevice, virtual_s24: VirtualS24) -> None:
    meminfo = dict(re.findall(r"^(\w+):\s+(\d+) kB$", device.shell("cat /proc/meminfo"), re.M))
    total = int(meminfo["MemTotal"])
    assert 7_000_000 < total < 8_388_608
    available = int(meminfo["MemAvailable"])

    pid = virtual_s24.register_process("ai.mlc.mlcchat")
    virtual_s24.set_process_rss(pid, 1_500_000)
    virtual_s24.set_process_rss(pid, 1_200_000)
    assert device.shell("pidof ai.mlc.mlcchat") == str(pid)
    status = device.shell(f"cat /proc/{pid}/status")
    assert re.search(r"^VmRSS:\s+1200000 kB$", status, re.M)
    assert re.search(r"^VmHWM:\s+1500000 kB$", status, re.M)
    after = dict(re.findall(r"^(\w+):\s+(\d+) kB$", device.shell("cat /proc/meminfo"), re.M))
    assert int(after["MemAvailable"]) < available

    dump = device.shell("dumpsys meminfo ai.mlc.mlcchat")
    assert f"** MEMINFO in pid {pid} [ai.mlc.mlcchat] **" in dump
    last = [line for line in dump.splitlines() if line.strip()][-1]
    match = re.search(r"TOTAL PSS:\s+(\d+)\s+TOTAL RSS:\s+(\d+)", last)
    assert match is not None
    assert int(match.group(2)) == 1_200_000
    assert 0 < int(match.group(1)) < 1_200_000

    ps = device.shell("ps -A")
    row = next(line for line in ps.splitlines() if line.endswith(" ai.mlc.mlcchat"))
    assert row.split()[1] == str(pid)

    virtual_s24.kill_process(pid)
    assert device.shell2("pidof ai.mlc.mlcchat").returncode == 1
    assert "No process found for: ai.mlc.mlcchat" in device.shell("dumpsys meminfo ai.mlc.mlcchat")
    assert device.shell2(f"cat /proc/{pid}/status", v2=True).returncode == 1


def test_dumpsys_cpuinfo(device: adbutils.AdbDevice) -> None:
    out = device.shell("dumpsys cpuinfo")
    assert re.match(r"Load: [\d.]+ / [\d.]+ / [\d.]+", out)
    assert re.search(r"^[\d.]+% TOTAL: ", out, re.M)
    assert "Can't find service: nosuch" in device.shell("dumpsys nosuch")


def _cpu(device: adbutils.AdbDevice) -> tuple[int, int]:
    """(total, busy) clock ticks of /proc/stat's cpu line; iowait counts as idle."""
    fields = [int(v) for v in device.shell("grep '^cpu ' /proc/stat").split()[1:9]]
    return sum(fields), sum(fields) - fields[3] - fields[4]


def _ticks(device: adbutils.AdbDevice, pid: int) -> int:
    """utime + stime of /proc/PID/stat, counted from the last ')' as a sampler must."""
    fields = device.shell(f"cat /proc/{pid}/stat").rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def test_proc_stat_counts_work_and_the_working_process_counts_its_own(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24
) -> None:
    pid = virtual_s24.register_process("llama-cli")
    total0, busy0 = _cpu(device)
    mine0 = _ticks(device, pid)
    virtual_s24.add_work(2.0, 1.0, pid=pid)
    virtual_s24.add_work(1.0, 1.0)  # work of no process (a kernel thread's)
    total1, busy1 = _cpu(device)
    mine = _ticks(device, pid) - mine0
    # 2 s of model work keeps 6.6 of the 10 cores busy: 1320 ticks, all the process's own.
    assert abs(mine - 1320) <= 2
    # The phone counts both pieces of work and its own background on top.
    assert busy1 - busy0 >= 3 * 660 - 10
    assert total1 > total0
    assert device.shell(f"cat /proc/{pid}/stat").startswith(f"{pid} (llama-cli) S ")


def test_a_killed_process_does_no_more_work(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24
) -> None:
    # The host may still be finishing a killed llama-cli's prompt; the phone is not.
    pid = virtual_s24.register_process("llama-cli")
    device.shell(f"kill -9 {pid}")
    _, busy0 = _cpu(device)
    virtual_s24.add_work(2.0, 1.0, pid=pid)
    _, busy1 = _cpu(device)
    assert busy1 - busy0 < 100  # the background's few ticks, not 1320 of model work


def test_every_process_has_a_stat_line_and_services_use_a_little_cpu(
    device: adbutils.AdbDevice,
) -> None:
    lines = device.shell("cat /proc/[0-9]*/stat").splitlines()
    names = {line.split(" (")[1].rpartition(")")[0] for line in lines}
    assert {"init", "system_server", "surfaceflinger", "adbd"} <= names
    [server] = [line for line in lines if line.startswith("1450 (")]
    before = int(server.rpartition(")")[2].split()[11])
    time.sleep(1.1)
    after = int(device.shell("cat /proc/1450/stat").rpartition(")")[2].split()[11])
    assert after > before  # system_server's steady background
