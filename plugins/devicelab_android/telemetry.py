"""On-device telemetry through ONE persistent adb shell stream per device.

A sampling loop runs on the phone and prints one block per tick: every thermal zone, the
CPU frequency of each cluster, the battery's sysfs values, MemAvailable, the CPU time of the
whole phone (``/proc/stat``'s ``cpu`` line) and the watched process's VmRSS/VmHWM and CPU
time (``/proc/PID/stat``), all read by a single ``grep -H`` (one process per tick, so the
loop itself stays light). Every ``SLOW_EVERY`` ticks it adds ``dumpsys thermalservice`` (the
thermal status) and ``dumpsys battery`` (what powers the phone). The host parses blocks as
they stream in; the sampler reads the latest one on its own clock.

Values the phone cannot give stay ``None``; units are checked, never assumed.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import devicelab
from devicelab import Collector

if TYPE_CHECKING:
    from .adb import Adb

TICK = "@tick"
SLOW = "@slow"
SLOW_EVERY = 10

FAST_FILES = [
    "/sys/class/thermal/thermal_zone*/type",
    "/sys/class/thermal/thermal_zone*/temp",
    "/sys/devices/system/cpu/cpufreq/policy*/scaling_cur_freq",
    "/sys/devices/system/cpu/cpufreq/policy*/scaling_max_freq",
    "/sys/class/power_supply/battery/capacity",
    "/sys/class/power_supply/battery/current_now",
    "/sys/class/power_supply/battery/voltage_now",
    "/sys/class/power_supply/battery/temp",
    "/sys/class/power_supply/battery/status",
    "/proc/meminfo",
    "/proc/stat",
]
# Lines the loop leaves out: empty ones, and /proc/stat's per-CPU, interrupt and softirq
# lines (the interrupt line alone is kilobytes on a phone; the total "cpu" line is enough).
SKIP = "'^$|^(cpu[0-9]+|intr|softirq) '"
# The kernel's clock tick (USER_HZ), the unit of /proc/stat and /proc/PID/stat: 100 on
# every Android kernel.
TICKS_PER_S = 100


def loop_script(pids: Iterable[int], interval_s: float, package: str | None = None) -> str:
    """The shell loop the phone runs. No command substitution: plain commands only.

    With ``package`` (an app), the slow part adds its ``dumpsys meminfo`` total PSS.
    """
    files = [*FAST_FILES, *(f"/proc/{int(p)}/{f}" for p in pids for f in ("status", "stat"))]
    tick = f"echo {TICK}; grep -HvE {SKIP} {' '.join(files)} 2>/dev/null; sleep {interval_s:g}; "
    slow = (
        f"echo {SLOW}; dumpsys thermalservice 2>/dev/null | grep -E 'Thermal Status|mValue'; "
        "dumpsys battery 2>/dev/null | grep -E 'powered|status|level|current now'; "
    )
    if package:
        slow += f"dumpsys meminfo {shlex.quote(package)} 2>/dev/null | grep -E 'TOTAL'; "
    return f"while true; do {tick * SLOW_EVERY}{slow}done"


THERMAL_STATUS = re.compile(r"Thermal Status:\s*(\d+)")
# "TOTAL PSS: 90277  TOTAL RSS: ..." (current), or "TOTAL:  90277 ..." (older releases); KB.
TOTAL_PSS = re.compile(r"TOTAL(?: PSS)?:\s+(\d+)")
HAL_TEMP = re.compile(r"mValue=([-\d.]+).*?mName=([^,}]+)")


def parse_block(lines: list[str], state: dict[str, Any]) -> dict[str, devicelab.Value]:
    """One tick's ``grep -H`` lines -> sample values. ``state`` keeps the slow readings."""
    zones: dict[str, dict[str, str]] = {}
    freqs: dict[str, dict[str, str]] = {}
    battery: dict[str, str] = {}
    meminfo: dict[str, str] = {}
    procs: dict[str, dict[str, str]] = {}
    cpu: tuple[float, float] | None = None
    engine: dict[str, float] = {}
    for line in lines:
        path, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        parts = path.split("/")
        if path.startswith("/sys/class/thermal/thermal_zone"):
            zones.setdefault(parts[4], {})[parts[5]] = value
        elif path.startswith("/sys/devices/system/cpu/cpufreq/policy"):
            freqs.setdefault(parts[6], {})[parts[7]] = value
        elif path.startswith("/sys/class/power_supply/battery/"):
            battery[parts[5]] = value
        elif path == "/proc/meminfo":
            key, _, rest = value.partition(":")
            meminfo[key] = rest.strip()
        elif path.startswith("/proc/") and path.endswith("/status"):
            key, _, rest = value.partition(":")
            procs.setdefault(parts[2], {})[key] = rest.strip()
        elif path == "/proc/stat":
            cpu = cpu_line(value) if cpu is None else cpu
        elif path.startswith("/proc/") and path.endswith("/stat"):
            used = process_ticks(value)
            if used is not None:
                engine[parts[2]] = used / TICKS_PER_S

    out: dict[str, devicelab.Value] = {}
    temps = []
    for zone in zones.values():
        c = milli_celsius(zone.get("temp"))
        name = zone.get("type")
        if c is not None and name:
            out[f"zone_{name}_c"] = c
            temps.append(c)
    out["temp_c"] = max(temps) if temps else None
    for policy, f in sorted(freqs.items()):
        cur = _int(f.get("scaling_cur_freq"))
        top = _int(f.get("scaling_max_freq"))
        out[f"cpu_{policy}_mhz"] = None if cur is None else cur / 1000
        out[f"cpu_{policy}_max_mhz"] = None if top is None else top / 1000
    avail = _int(meminfo.get("MemAvailable", "").split(" ")[0])
    out["mem_available_mb"] = None if avail is None else round(avail / 1024, 1)
    rss = [_int(p.get("VmRSS", "").split(" ")[0]) for p in procs.values()]
    hwm = [_int(p.get("VmHWM", "").split(" ")[0]) for p in procs.values()]
    rss_kb = sum(r for r in rss if r is not None) if any(r is not None for r in rss) else None
    hwm_kb = sum(h for h in hwm if h is not None) if any(h is not None for h in hwm) else None
    out["rss_mb"] = None if rss_kb is None else round(rss_kb / 1024, 1)
    out["mem_hwm_mb"] = None if hwm_kb is None else round(hwm_kb / 1024, 1)
    out["pss_mb"] = state.get("pss_mb")
    # An app's memory is its PSS (what Android accounts it); a native process's is its RSS.
    out["mem_mb"] = out["pss_mb"] if out["pss_mb"] is not None else out["rss_mb"]
    out.update(_battery(battery, state))
    out["thermal_status"] = state.get("thermal_status")
    out["cpu_total_s"] = None if cpu is None else cpu[0]
    out["cpu_busy_s"] = None if cpu is None else cpu[1]
    # None while no watched process can be read (none started yet, or it exited); the pids
    # read tell one llama-cli's counter from the next one's.
    out["engine_cpu_s"] = round(sum(engine.values()), 2) if engine else None
    out["engine_id"] = ",".join(sorted(engine)) if engine else None
    return out


def cpu_line(line: str) -> tuple[float, float] | None:
    """(total, busy) CPU seconds of /proc/stat's ``cpu`` line (all cores): user nice system
    idle iowait irq softirq steal [guest guest_nice]; iowait counts as idle, steal as busy,
    and guest time is already in user and nice."""
    fields = line.split()
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    try:
        ticks = [int(v) for v in fields[1:9]]
    except ValueError:
        return None
    total = sum(ticks)
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return total / TICKS_PER_S, (total - idle) / TICKS_PER_S


def process_ticks(line: str) -> int | None:
    """utime + stime + cutime + cstime (clock ticks) of a /proc/PID/stat line: the process's
    threads and its exited children. The name in parentheses may hold spaces and
    parentheses, so fields are counted from the last ')'."""
    _, sep, rest = line.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 15:
        return None
    try:
        # After ')': state is field 3 of proc(5), so utime (14) ... cstime (17) are 11 ... 14.
        return sum(int(v) for v in fields[11:15])
    except ValueError:
        return None


def parse_stat_lines(lines: Iterable[str]) -> dict[int, tuple[str, int]]:
    """pid -> (name, CPU ticks) of ``cat /proc/*/stat`` lines (unreadable ones left out)."""
    out: dict[int, tuple[str, int]] = {}
    for line in lines:
        head, sep, _ = line.rpartition(")")
        pid, _, name = head.partition(" (")
        used = process_ticks(line)
        if sep and pid.strip().isdigit() and used is not None:
            out[int(pid)] = (name, used)
    return out


def parse_uids(text: str) -> dict[int, int]:
    """pid -> real UID of ``grep -H '^Uid:' /proc/[0-9]*/status`` lines."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        path, _, value = line.partition(":Uid:")
        parts = path.split("/")
        fields = value.split()
        if len(parts) == 4 and parts[2].isdigit() and fields and fields[0].isdigit():
            out[int(parts[2])] = int(fields[0])
    return out


CONSUMERS_MARK = "@consumers"


def consumers_script(seconds: float) -> str:
    """One shell command: the ``cpu`` line and every process's stat, twice, ``seconds``
    apart."""
    read = "grep '^cpu ' /proc/stat; cat /proc/[0-9]*/stat 2>/dev/null"
    return f"{read}; echo {CONSUMERS_MARK}; sleep {seconds:g}; {read}"


def parse_consumers(text: str, exclude: Iterable[int] = ()) -> list[tuple[str, float]]:
    """:func:`consumers_script`'s output -> (process name, % of the phone's CPU time) of the
    busiest processes, summed by name, busiest first; ``exclude``: the engine's pids."""
    before, _, after = text.partition(CONSUMERS_MARK)

    def read(part: str) -> tuple[float | None, dict[int, tuple[str, int]]]:
        lines = part.splitlines()
        total = next((c[0] for c in map(cpu_line, lines) if c is not None), None)
        return total, parse_stat_lines(lines)

    (t0, p0), (t1, p1) = read(before), read(after)
    if t0 is None or t1 is None or t1 <= t0:
        return []
    skip = set(exclude)
    by_name: dict[str, float] = {}
    for pid, (name, used) in p1.items():
        if pid in skip or pid not in p0:
            continue
        delta = (used - p0[pid][1]) / TICKS_PER_S
        if delta > 0:
            by_name[name] = by_name.get(name, 0.0) + delta
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])
    return [(name, round(100 * used / (t1 - t0), 1)) for name, used in ranked]


def parse_slow(lines: list[str], state: dict[str, Any]) -> None:
    """``dumpsys thermalservice`` and ``dumpsys battery`` lines -> ``state``."""
    powered = []
    for line in lines:
        m = THERMAL_STATUS.search(line)
        if m:
            state["thermal_status"] = int(m.group(1))
        stripped = line.strip()
        if stripped.endswith(("powered: true", "powered: false")):
            powered.append(stripped.endswith("true"))
        if stripped.startswith("current now:"):
            state["current_now_ma"] = _int(stripped.split(":", 1)[1].strip())
        if stripped.startswith("TOTAL") and (m := TOTAL_PSS.match(stripped)):
            state["pss_mb"] = round(int(m.group(1)) / 1024, 1)
    if powered:
        state["external_power"] = any(powered)


def _battery(b: dict[str, str], state: dict[str, Any]) -> dict[str, devicelab.Value]:
    out: dict[str, devicelab.Value] = {
        "battery_level": _int(b.get("capacity")),
        "battery_temp_c": None,
        "power_w": None,
        "on_battery": None,
    }
    temp = _int(b.get("temp"))
    if temp is not None:
        out["battery_temp_c"] = temp / 10  # tenths of a degree
    volts = _int(b.get("voltage_now"))
    current = _int(b.get("current_now"))
    if volts is not None and current is not None:
        v = volts / 1e6 if volts > 1000 else float(volts)  # uV per the kernel docs
        # The kernel says uA; many Samsung kernels report mA. A phone draws well under 10 A,
        # so a magnitude above 10,000 can only be uA.
        amps = abs(current) / 1e6 if abs(current) > 10_000 else abs(current) / 1000
        out["power_w"] = round(v * amps, 4)
    status = b.get("status")
    if "external_power" in state:
        out["on_battery"] = not state["external_power"]
    elif status:
        out["on_battery"] = status == "Discharging"
    return out


def milli_celsius(raw: str | None) -> float | None:
    """A thermal zone's ``temp`` in degrees C. Most zones report milli-degrees, some vendor
    zones deci-degrees or whole degrees; unreadable or absurd values are dropped, not guessed.
    """
    value = _int(raw)
    if value is None:
        return None
    size = abs(value)
    c = value / 1000 if size >= 1000 else value / 10 if size > 150 else float(value)
    return round(c, 2) if -40 <= c <= 150 else None


def _int(raw: str | None) -> int | None:
    try:
        return int(str(raw).strip())
    except (TypeError, ValueError):
        return None


class StreamingCollector(Collector):
    """Telemetry from the on-device loop. One stream per device; restarted (once, not per
    sample) when the set of watched processes changes."""

    name = "android"

    def __init__(self, adb: Adb, interval_s: float = 0.04) -> None:
        self.adb = adb
        self.interval_s = interval_s
        self._pids: tuple[int, ...] = ()
        self._package: str | None = None
        self._latest: dict[str, devicelab.Value] = {}
        self._slow: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.error: str | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="android-telemetry", daemon=True)
        self._thread.start()

    def watch(self, pids: Iterable[int], package: str | None = None) -> None:
        """Follow these processes' memory (and an app's PSS) from now on: the loop restarts
        with their PIDs, once, not per sample."""
        pids = tuple(sorted(set(pids)))
        if (pids, package) == (self._pids, self._package):
            return
        self._pids, self._package = pids, package
        self.stop()
        with self._lock:
            self._latest = {}
            self._slow = {}
        self.start()

    @property
    def pids(self) -> tuple[int, ...]:
        """The processes watched now: the engine's."""
        return self._pids

    def sample(self) -> dict[str, devicelab.Value]:
        with self._lock:
            return dict(self._latest)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        block: list[str] = []
        mode = [""]

        def on_line(line: str) -> None:
            if line in (TICK, SLOW):
                if mode[0] == TICK and block:
                    values = parse_block(block, self._slow)
                    with self._lock:
                        self._latest = values
                        self.ticks += 1
                elif mode[0] == SLOW:
                    parse_slow(block, self._slow)
                block.clear()
                mode[0] = line
            else:
                block.append(line)

        script = loop_script(self._pids, self.interval_s, self._package)
        while not self._stop.is_set():
            try:
                self.adb.lines(script, on_line, self._stop)
            except Exception as exc:  # the phone went away: retry until stopped
                self.error = f"{type(exc).__name__}: {exc}"
                if self._stop.wait(0.5):
                    return
            else:
                if self._stop.wait(0.2):
                    return


def poll_once(adb: Adb, pids: Iterable[int] = ()) -> dict[str, devicelab.Value]:
    """One sample by one adb command: the slow way, kept to benchmark against the stream."""
    files = [*FAST_FILES, *(f"/proc/{int(p)}/{f}" for p in pids for f in ("status", "stat"))]
    out = adb.run(f"grep -HvE {SKIP} {' '.join(files)} 2>/dev/null", timeout=10).stdout
    return parse_block(out.splitlines(), {})


def measure_rates(adb: Adb, seconds: float = 3.0) -> dict[str, float]:
    """Samples per second: the persistent stream (no sleep) against one command per sample."""
    collector = StreamingCollector(adb, interval_s=0)
    collector.start()
    time.sleep(0.5)  # let the loop start
    start_ticks, t0 = collector.ticks, time.perf_counter()
    time.sleep(seconds)
    stream_rate = (collector.ticks - start_ticks) / (time.perf_counter() - t0)
    collector.stop()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        poll_once(adb)
        n += 1
    return {"stream_hz": stream_rate, "per_command_hz": n / (time.perf_counter() - t0)}
