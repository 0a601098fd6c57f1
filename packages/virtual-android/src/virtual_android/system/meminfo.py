"""The activity manager's process statistics: `dumpsys meminfo [PROCESS]` and `dumpsys cpuinfo`,
and the kernel's /proc/meminfo and load averages they agree with."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from .service import SystemService

if TYPE_CHECKING:
    from ..model.heat import PhoneModel
    from ..shell.interpreter import CommandContext
    from .processes import ProcessInfo

__all__ = ["CpuInfoService", "MemInfoService", "ProcessSource", "kernel_meminfo", "loadavg"]

MEM_TOTAL_KB = 7_574_620
_BASE_AVAILABLE_KB = 3_612_400


class ProcessSource(Protocol):
    def process_list(self) -> list[ProcessInfo]: ...


def kernel_meminfo(processes: Iterable[ProcessInfo]) -> dict[str, int]:
    """/proc/meminfo: what the apps' processes use comes out of what is available."""
    used = sum(p.rss_kb for p in processes if not p.system)
    available = max(180_000, _BASE_AVAILABLE_KB - used)
    free = max(60_000, available // 9)
    cached = max(100_000, available - free - 220_000)
    return {
        "MemTotal": MEM_TOTAL_KB,
        "MemFree": free,
        "MemAvailable": available,
        "Buffers": 9_412,
        "Cached": cached,
        "SwapCached": 41_220,
        "Active": 2_203_144,
        "Inactive": 1_802_556,
        "Unevictable": 241_120,
        "Mlocked": 240_000,
        "SwapTotal": 8_388_604,
        "SwapFree": 6_901_212,
        "Dirty": 1_024,
        "Writeback": 0,
        "AnonPages": 1_904_332 + used,
        "Mapped": 1_188_440,
        "Shmem": 30_704,
        "KReclaimable": 220_480,
        "Slab": 505_316,
        "SReclaimable": 140_112,
        "SUnreclaim": 365_204,
        "KernelStack": 71_856,
        "PageTables": 142_420,
        "CommitLimit": 12_175_912,
        "Committed_AS": 128_100_560,
        "VmallocTotal": 263_061_440,
        "VmallocUsed": 190_760,
        "CmaTotal": 540_672,
        "CmaFree": 12_004,
    }


def loadavg(model: PhoneModel) -> tuple[float, float, float]:
    load = model.load()
    return (1.2 + 7.5 * load, 1.4 + 4.0 * load, 1.6 + 2.0 * load)


class _ProcessStats(SystemService):
    def __init__(self, processes: ProcessSource, model: PhoneModel) -> None:
        self._processes = processes
        self._model = model


class MemInfoService(_ProcessStats):
    name = "meminfo"

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        targets = [a for a in args if not a.startswith("-")]
        if not targets:
            mem = kernel_meminfo(self._processes.process_list())
            ctx.write("Applications Memory Usage (in Kilobytes):\n")
            uptime_ms = int(self._model.uptime() * 1000)
            ctx.write(f"Uptime: {uptime_ms} Realtime: {uptime_ms}\n\n")
            ctx.write("Total PSS by process:\n")
            for proc in sorted(self._processes.process_list(), key=lambda p: -p.rss_kb):
                if proc.rss_kb:
                    ctx.write(f"{int(proc.rss_kb * 0.55):>11,}K: {proc.name} (pid {proc.pid})\n")
            ctx.write(f"\nTotal RAM: {mem['MemTotal']:,}K (status normal)\n")
            ctx.write(f" Free RAM: {mem['MemAvailable']:,}K\n")
            return 0
        target = targets[0]
        procs = [
            p for p in self._processes.process_list() if p.name == target or str(p.pid) == target
        ]
        if not procs:
            ctx.write(f"No process found for: {target}\n")
            return 0
        uptime_ms = int(self._model.uptime() * 1000)
        ctx.write("Applications Memory Usage (in Kilobytes):\n")
        ctx.write(f"Uptime: {uptime_ms} Realtime: {uptime_ms}\n")
        for proc in procs:
            rss = proc.rss_kb
            pss = int(rss * 0.62)
            native = int(pss * 0.55)
            java = int(pss * 0.12)
            code = int(pss * 0.15)
            stack = 1024
            graphics = int(pss * 0.08)
            private_other = max(0, pss - native - java - code - stack - graphics)
            swap = 42
            rows = [
                (
                    "Native Heap",
                    native,
                    native - 200,
                    0,
                    swap,
                    int(native * 1.1),
                    native + 4096,
                    native,
                    4096,
                ),
                ("Dalvik Heap", java, java - 100, 0, 0, int(java * 1.3), java + 2048, java, 2048),
                ("Stack", stack, stack, 0, 0, stack, 0, 0, 0),
                ("Graphics", graphics, graphics, 0, 0, graphics, 0, 0, 0),
                (
                    "Other mmap",
                    code,
                    40,
                    code - 40,
                    0,
                    rss - native - java - stack - graphics,
                    0,
                    0,
                    0,
                ),
                ("Unknown", private_other, private_other, 0, 0, private_other, 0, 0, 0),
            ]
            ctx.write(f"\n** MEMINFO in pid {proc.pid} [{proc.name}] **\n")
            top = ("Pss", "Private", "Private", "SwapPss", "Rss", "Heap", "Heap", "Heap")
            bottom = ("Total", "Dirty", "Clean", "Dirty", "Total", "Size", "Alloc", "Free")
            ctx.write(" " * 15 + " " + " ".join(f"{c:>8}" for c in top) + "\n")
            ctx.write(" " * 15 + " " + " ".join(f"{c:>8}" for c in bottom) + "\n")
            ctx.write(" " * 15 + " " + " ".join(f"{'------':>8}" for _ in top) + "\n")
            for label, *values in rows:
                ctx.write(f"{label:>15} " + " ".join(f"{v:>8}" for v in values) + "\n")
            total = (
                pss,
                pss - code + 40,
                code - 40,
                swap,
                rss,
                native + java + 6144,
                native + java,
                6144,
            )
            ctx.write(f"{'TOTAL':>15} " + " ".join(f"{v:>8}" for v in total) + "\n")
            ctx.write("\n App Summary\n")
            ctx.write("                       Pss(KB)                        Rss(KB)\n")
            ctx.write("                        ------                         ------\n")
            summary = [
                ("Java Heap", java, int(java * 1.3)),
                ("Native Heap", native, int(native * 1.1)),
                ("Code", code, rss - native - java - stack - graphics - private_other),
                ("Stack", stack, stack),
                ("Graphics", graphics, graphics),
                ("Private Other", private_other, private_other),
                ("System", 0, 0),
                ("Unknown", 0, 0),
            ]
            for label, a, b in summary:
                ctx.write(f"{label + ':':>20} {a:>9}                      {b:>9}\n")
            ctx.write(
                f"\n{'TOTAL PSS:':>20} {pss:>8}            TOTAL RSS: {rss:>8}"
                f"       TOTAL SWAP PSS: {swap:>8}\n"
            )
        return 0


class CpuInfoService(_ProcessStats):
    name = "cpuinfo"

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        load = loadavg(self._model)
        busy = self._model.load()
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.000")
        ctx.write(f"Load: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")
        ctx.write(f"CPU usage from 60000ms to 0ms ago ({now} to {now}):\n")
        total = 4.0 + 85.0 * busy
        for proc in sorted(self._processes.process_list(), key=lambda p: -p.rss_kb)[:8]:
            share = total * 0.1 if proc.rss_kb else 0.0
            ctx.write(
                f"  {share:.1f}% {proc.pid}/{proc.name}: "
                f"{share * 0.7:.1f}% user + {share * 0.3:.1f}% kernel\n"
            )
        ctx.write(
            f"{total:.1f}% TOTAL: {total * 0.7:.1f}% user + {total * 0.28:.1f}% kernel"
            " + 0.1% iowait + 0.1% irq + 0.1% softirq\n"
        )
        return 0
