"""The tree an Android 14 phone shows: /system, /data and /sdcard, /proc and /sys.

The files under /proc and /sys are generated when read, from the device's state (its process
table, memory and load, through :class:`ProcView`) and its heat model, so ``cat`` sees them
change as a phone's do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ..model.heat import POLICIES, ZONES, PhoneModel, PolicySpec
from .filesystem import VirtualFS

__all__ = [
    "WORK_CPUS",
    "ProcView",
    "ProcessEntry",
    "build_system_tree",
    "install_process_files",
    "install_procfs",
    "install_sysfs",
    "render_cmdline",
    "render_comm",
    "render_cpuinfo",
    "render_process_stat",
    "render_status",
]

# How a second of model work spreads over the 10 cores in /proc/stat: the big and middle
# cores (4-9) nearly busy, the little ones (0-3) a third; WORK_CPUS is the CPU seconds it is
# in all, what the working process's /proc/PID/stat counts for it.
WORK_SHARE: tuple[float, ...] = (0.3,) * 4 + (0.9,) * 6
WORK_CPUS = sum(WORK_SHARE)
# Of each core, the share idle-phone background keeps busy (kernel threads and services);
# the services below account for part of it in their own /proc/PID/stat.
BACKGROUND_SHARE = 0.03
SERVICE_CPUS = {
    "system_server": 0.06,
    "surfaceflinger": 0.04,
    "com.android.systemui": 0.02,
    "adbd": 0.01,
    "logd": 0.005,
}


class ProcessEntry(Protocol):
    """A process as /proc/PID shows it."""

    pid: int
    name: str
    args: str
    uid: str
    ppid: int
    rss_kb: int
    hwm_kb: int
    vsz_kb: int
    threads: int
    system: bool
    work_s: float
    started_s: float


class ProcView(Protocol):
    """What /proc reads from the device."""

    @property
    def model(self) -> PhoneModel: ...

    @property
    def next_pid(self) -> int:
        """The pid the next process will get (/proc/loadavg's last field)."""
        ...

    def meminfo(self) -> dict[str, int]: ...

    def loadavg(self) -> tuple[float, float, float]: ...

    def process(self, pid: int) -> ProcessEntry | None:
        """The live process ``pid``, or None once it is gone."""
        ...


def build_system_tree(fs: VirtualFS, props: Mapping[str, str], commands: Iterable[str]) -> None:
    """/system, /data, /sdcard and the rest of what a shell user sees outside /proc and /sys."""
    for path, mode, uid, gid in (
        ("/system/bin", 0o755, 0, 2000),
        ("/system/xbin", 0o755, 0, 2000),
        ("/vendor/bin", 0o755, 0, 2000),
        ("/data", 0o771, 1000, 1000),
        ("/data/local", 0o751, 0, 0),
        ("/data/local/tmp", 0o771, 2000, 2000),
        ("/data/misc/perfetto-traces", 0o773, 9999, 9999),
        ("/data/misc/perfetto-configs", 0o775, 9999, 9999),
        ("/storage/emulated/0", 0o771, 0, 9997),
        ("/storage/self", 0o755, 0, 0),
        ("/mnt", 0o755, 0, 1000),
        ("/dev", 0o755, 0, 0),
        ("/apex", 0o755, 0, 0),
    ):
        fs.add_dir(path, mode, uid, gid)
    for sub in (
        "Android",
        "DCIM",
        "Download",
        "Documents",
        "Movies",
        "Music",
        "Pictures",
        "Alarms",
        "Notifications",
        "Podcasts",
        "Ringtones",
    ):
        fs.add_dir(f"/storage/emulated/0/{sub}", 0o771, 0, 9997)
    fs.add_link("/storage/self/primary", "/storage/emulated/0")
    fs.add_link("/sdcard", "/storage/self/primary")
    fs.add_link("/etc", "/system/etc")
    fs.add_dir("/system/etc", 0o755)
    fs.add_file("/system/etc/hosts", "127.0.0.1       localhost\n::1             ip6-localhost\n")
    fs.add_file(
        "/system/build.prop",
        "".join(f"{k}={v}\n" for k, v in props.items() if k.startswith("ro.")),
    )
    for name in sorted(
        set(commands) | {"sh", "toybox", "am", "pm", "cmd", "app_process", "logcat"}
    ):
        if name != "[":
            fs.add_file(f"/system/bin/{name}", b"\x7fELF\x02\x01\x01", 0o755)
    fs.add_file("/dev/null", b"", 0o666)


def install_procfs(fs: VirtualFS, view: ProcView) -> None:
    """/proc's system-wide files, computed from the device's state when read."""
    fs.add_generated("/proc/meminfo", lambda: render_meminfo(view))
    fs.add_generated("/proc/uptime", lambda: render_uptime(view.model))
    fs.add_generated("/proc/loadavg", lambda: render_loadavg(view))
    fs.add_generated("/proc/stat", lambda: render_stat(view))
    fs.add_file(
        "/proc/version",
        "Linux version 6.1.75-android14-11-29543898-abS921BXXS3AXI1 "
        "(kleaf@build-host) (Android (10087095, +pgo, +bolt, +lto, -mlgo) "
        "clang version 17.0.2) "
        "#1 SMP PREEMPT Mon Sep 2 08:00:00 UTC 2024\n",
        0o444,
    )
    fs.add_file("/proc/cpuinfo", render_cpuinfo(), 0o444)


def install_sysfs(fs: VirtualFS, model: PhoneModel) -> None:
    """/sys: thermal zones, CPU frequency policies and the battery, read from the heat model."""
    # thermal zones
    for index, zone in enumerate(ZONES):
        base = f"/sys/class/thermal/thermal_zone{index}"
        fs.add_file(f"{base}/type", zone.name + "\n", 0o444)
        fs.add_generated(f"{base}/temp", _zone_reader(model, zone.name), 0o444, 4096)
        fs.add_file(f"{base}/mode", "enabled\n", 0o644)
        fs.add_file(f"{base}/policy", "step_wise\n", 0o644)

    # cpufreq
    cpu_root = "/sys/devices/system/cpu"
    fs.add_file(f"{cpu_root}/online", "0-9\n", 0o444)
    fs.add_file(f"{cpu_root}/possible", "0-9\n", 0o444)
    fs.add_file(f"{cpu_root}/present", "0-9\n", 0o444)
    for policy in POLICIES:
        base = f"{cpu_root}/cpufreq/{policy.name}"
        cpus = " ".join(str(c) for c in policy.cpus)
        fs.add_file(f"{base}/related_cpus", cpus + "\n", 0o444)
        fs.add_file(f"{base}/affected_cpus", cpus + "\n", 0o444)
        fs.add_file(f"{base}/cpuinfo_max_freq", f"{policy.max_khz}\n", 0o444)
        fs.add_file(f"{base}/cpuinfo_min_freq", f"{policy.min_khz}\n", 0o444)
        fs.add_file(f"{base}/scaling_min_freq", f"{policy.min_khz}\n", 0o644)
        fs.add_file(f"{base}/scaling_governor", "energy_step\n", 0o644)
        fs.add_file(f"{base}/scaling_driver", "exynos_acme\n", 0o444)
        fs.add_generated(
            f"{base}/scaling_cur_freq", _freq_reader(model, policy, False), 0o444, 4096
        )
        fs.add_generated(f"{base}/scaling_max_freq", _freq_reader(model, policy, True), 0o644, 4096)
        fs.add_generated(
            f"{base}/cpuinfo_cur_freq", _freq_reader(model, policy, False), 0o444, 4096
        )
        for cpu in policy.cpus:
            fs.add_link(f"{cpu_root}/cpu{cpu}/cpufreq", f"../cpufreq/{policy.name}")
            fs.add_file(f"{cpu_root}/cpu{cpu}/online", "1\n", 0o644)

    # battery
    battery = "/sys/class/power_supply/battery"
    fs.add_generated(
        f"{battery}/capacity", lambda: f"{model.battery().level}\n".encode(), 0o444, 4096
    )
    fs.add_generated(
        f"{battery}/current_now",
        lambda: f"{model.battery().current_ma}\n".encode(),
        0o444,
        4096,
    )
    fs.add_generated(
        f"{battery}/voltage_now",
        lambda: f"{model.battery().voltage_mv * 1000}\n".encode(),
        0o444,
        4096,
    )
    fs.add_generated(
        f"{battery}/temp",
        lambda: f"{model.battery().temperature_tenths}\n".encode(),
        0o444,
        4096,
    )
    fs.add_generated(f"{battery}/status", lambda: _battery_status(model), 0o444, 4096)
    fs.add_file(f"{battery}/health", "Good\n", 0o444)
    fs.add_file(f"{battery}/present", "1\n", 0o444)
    fs.add_file(f"{battery}/technology", "Li-ion\n", 0o444)
    fs.add_file(f"{battery}/charge_full_design", "3880000\n", 0o444)
    fs.add_generated(
        f"{battery}/charge_counter",
        lambda: f"{model.battery().charge_counter_uah}\n".encode(),
        0o444,
        4096,
    )


def _zone_reader(model: PhoneModel, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return f"{round(model.temperature(name) * 1000)}\n".encode()

    return read


def _freq_reader(model: PhoneModel, policy: PolicySpec, maximum: bool) -> Callable[[], bytes]:
    def read() -> bytes:
        value = model.max_freq(policy) if maximum else model.cur_freq(policy)
        return f"{value}\n".encode()

    return read


def _battery_status(model: PhoneModel) -> bytes:
    status = model.battery().status
    return {2: b"Charging\n", 3: b"Discharging\n", 5: b"Full\n"}.get(status, b"Unknown\n")


def render_meminfo(view: ProcView) -> bytes:
    return "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in view.meminfo().items()).encode()


def render_uptime(model: PhoneModel) -> bytes:
    up = model.uptime()
    return f"{up:.2f} {up * 8.7:.2f}\n".encode()


def render_loadavg(view: ProcView) -> bytes:
    a, b, c = view.loadavg()
    return f"{a:.2f} {b:.2f} {c:.2f} 2/2350 {view.next_pid}\n".encode()


def render_stat(view: ProcView) -> bytes:
    """/proc/stat in clock ticks (USER_HZ 100): each core's background share of the uptime
    plus its share of the model work done so far (:data:`WORK_SHARE`)."""
    up = view.model.uptime()
    work = view.model.work_seconds
    lines = []
    total_user = total_sys = total_idle = 0
    for cpu, share in enumerate(WORK_SHARE):
        ticks = int(up * 100)
        busy = int(ticks * BACKGROUND_SHARE + work * 100 * share)
        user, system = int(busy * 0.7), busy - int(busy * 0.7)
        idle = max(0, ticks - busy)
        total_user += user
        total_sys += system
        total_idle += idle
        lines.append(f"cpu{cpu} {user} 120 {system} {idle} 40 15 8 0 0 0")
    head = f"cpu  {total_user} 1200 {total_sys} {total_idle} 400 150 80 0 0 0"
    tail = [
        f"intr {int(up * 2100)}",
        f"ctxt {int(up * 5200)}",
        f"btime {int(view.model.boot_time)}",
        f"processes {view.next_pid}",
        "procs_running 2",
        "procs_blocked 0",
        "softirq 0 0 0 0 0 0 0 0 0 0 0",
    ]
    return ("\n".join([head, *lines, *tail]) + "\n").encode()


def render_process_stat(view: ProcView, proc: ProcessEntry | None) -> bytes:
    """/proc/PID/stat: the CPU time of the model work counted to the process (its work
    seconds spread as /proc/stat spreads them, :data:`WORK_CPUS`; utime 80 %, stime 20 %),
    plus a system service's steady background share (:data:`SERVICE_CPUS`)."""
    if proc is None:
        return b""
    alive_s = max(0.0, view.model.uptime() - (proc.started_s - view.model.boot_monotonic))
    cpu_s = proc.work_s * WORK_CPUS + SERVICE_CPUS.get(proc.name, 0.0) * alive_s
    ticks = int(cpu_s * 100)
    utime = int(ticks * 0.8)
    start = int((proc.started_s - view.model.boot_monotonic) * 100)
    fields = [
        f"{proc.pid} ({proc.name[:15]}) S {proc.ppid} {proc.pid} {proc.pid} 0 -1 4194560",
        f"1200 0 0 0 {utime} {ticks - utime} 0 0 20 0 {proc.threads} 0 {start}",
        f"{proc.vsz_kb * 1024} {proc.rss_kb // 4} 18446744073709551615 1 1 0 0 0 0 0 4612",
        "1073775864 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0",
    ]
    return (" ".join(fields) + "\n").encode()


def render_cpuinfo() -> str:
    parts = {"Cortex-A520": "0xd80", "Cortex-A720": "0xd81", "Cortex-X4": "0xd82"}
    blocks = []
    for policy in POLICIES:
        for cpu in policy.cpus:
            blocks.append(
                f"processor\t: {cpu}\nBogoMIPS\t: 52.00\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                "cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm "
                "dit uscat ilrcpc "
                "flagm ssbs sb paca pacg dcpodp sve2 flagm2 frint i8mm bf16 bti\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                f"CPU part\t: {parts[policy.core]}\nCPU revision\t: 1\n"
            )
    return "\n".join(blocks) + "\nHardware\t: Samsung s5e9945\n"


def render_comm(proc: ProcessEntry | None) -> bytes:
    return (proc.name + "\n").encode() if proc else b""


def render_cmdline(proc: ProcessEntry | None) -> bytes:
    if proc is None:
        return b""
    return ("\0".join((proc.args or proc.name).split(" ")) + "\0").encode()


def uid_number(user: str) -> int:
    """The numeric UID of a user name as ps shows it: u0_aNNN is app 10000 + NNN of user 0."""
    named = {"root": 0, "system": 1000, "shell": 2000, "logd": 1036, "radio": 1001}
    if user in named:
        return named[user]
    if user.startswith("u0_a") and user[4:].isdigit():
        return 10_000 + int(user[4:])
    return 10_201


def render_status(proc: ProcessEntry | None) -> bytes:
    if proc is None:
        return b""
    uid = uid_number(proc.uid)
    rss = proc.rss_kb
    lines = [
        f"Name:\t{proc.name[:15]}",
        "Umask:\t0077",
        "State:\tS (sleeping)",
        f"Tgid:\t{proc.pid}",
        "Ngid:\t0",
        f"Pid:\t{proc.pid}",
        f"PPid:\t{proc.ppid}",
        "TracerPid:\t0",
        f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}",
        f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}",
        "FDSize:\t64",
        "Groups:\t1004 1007 1011 1015 1028 3001 3002 3003 3006",
        f"VmPeak:\t{max(proc.vsz_kb, proc.hwm_kb):>8} kB",
        f"VmSize:\t{proc.vsz_kb:>8} kB",
        f"VmLck:\t{0:>8} kB",
        f"VmPin:\t{0:>8} kB",
        f"VmHWM:\t{proc.hwm_kb:>8} kB",
        f"VmRSS:\t{rss:>8} kB",
        f"RssAnon:\t{int(rss * 0.8):>8} kB",
        f"RssFile:\t{rss - int(rss * 0.8) - int(rss * 0.01):>8} kB",
        f"RssShmem:\t{int(rss * 0.01):>8} kB",
        f"VmData:\t{int(proc.vsz_kb * 0.3):>8} kB",
        f"VmStk:\t{136:>8} kB",
        f"VmExe:\t{2048:>8} kB",
        f"VmLib:\t{12288:>8} kB",
        f"VmPTE:\t{max(12, rss // 512):>8} kB",
        f"VmSwap:\t{0:>8} kB",
        "CoreDumping:\t0",
        "THP_enabled:\t1",
        f"Threads:\t{proc.threads}",
        "SigQ:\t0/29562",
        "Cpus_allowed:\t3ff",
        "Cpus_allowed_list:\t0-9",
        "voluntary_ctxt_switches:\t120",
        "nonvoluntary_ctxt_switches:\t7",
    ]
    return ("\n".join(lines) + "\n").encode()


def install_process_files(fs: VirtualFS, view: ProcView, pid: int, system: bool) -> None:
    """/proc/PID: status, cmdline, comm and oom_score_adj, empty once the process is gone."""
    fs.add_generated(f"/proc/{pid}/status", lambda: render_status(view.process(pid)))
    fs.add_generated(f"/proc/{pid}/stat", lambda: render_process_stat(view, view.process(pid)))
    fs.add_generated(f"/proc/{pid}/cmdline", lambda: render_cmdline(view.process(pid)))
    fs.add_generated(f"/proc/{pid}/comm", lambda: render_comm(view.process(pid)))
    fs.add_generated(f"/proc/{pid}/oom_score_adj", lambda: b"0\n" if system else b"700\n")
