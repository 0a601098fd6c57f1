"""logd: the phone's log buffers, and the `logcat` and `log` commands that read and write them.

The system (boot, the activity and package managers), the apps and `log -t TAG msg` write
entries; `logcat` prints them in Android's formats (threadtime by default), filters them by
buffer (`-b main|system|crash|events|radio|all|default`), tag and priority (`-s TAG`,
`TAG:P`, `*:S`), pid, regex and count, and either dumps (`-d`, `-t N`) or keeps streaming new
entries until its client goes away. `-c` clears, `-g` reports the ring buffer sizes.
"""

from __future__ import annotations

import collections
import datetime
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import VirtualAndroidError
from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["BUFFERS", "LogBuffer", "LogEntry", "logd_commands"]

BUFFERS = ("main", "radio", "events", "system", "crash")
DEFAULT_BUFFERS = ("main", "system", "crash")
PRIORITIES = "VDIWEF"
_SILENT = "S"
_RING_ENTRIES = 20_000  # ~256 KiB of typical lines per buffer, as logd keeps by default
_RING_KIB = 256
_CHATTER_S = 1.0


@dataclass(frozen=True)
class LogEntry:
    seq: int
    when: float
    pid: int
    tid: int
    priority: str  # one of VDIWEF
    tag: str
    message: str
    buffer: str
    uid: str = "root"


class LogBuffer:
    """The device's log ring buffers (what logd holds); thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rings: dict[str, collections.deque[LogEntry]] = {
            name: collections.deque(maxlen=_RING_ENTRIES) for name in BUFFERS
        }
        self._seq = 0

    def write(
        self,
        tag: str,
        message: str,
        *,
        priority: str = "I",
        pid: int = 0,
        tid: int = 0,
        buffer: str = "main",
        uid: str = "root",
    ) -> None:
        """Append one entry per line of ``message`` (as liblog splits multi-line messages)."""
        if buffer not in self._rings:
            raise ValueError(f"no log buffer {buffer!r}")
        priority = priority.upper()[:1] if priority else "I"
        if priority not in PRIORITIES:
            priority = "I"
        with self._cond:
            for line in message.splitlines() or [""]:
                self._seq += 1
                entry = LogEntry(
                    self._seq, time.time(), pid, tid or pid, priority, tag, line, buffer, uid
                )
                self._rings[buffer].append(entry)
            self._cond.notify_all()

    def clear(self, buffers: tuple[str, ...] = BUFFERS) -> None:
        with self._cond:
            for name in buffers:
                self._rings[name].clear()

    def entries(self, buffers: tuple[str, ...], after: int = 0) -> list[LogEntry]:
        """Entries of ``buffers`` with a sequence number above ``after``, oldest first."""
        with self._cond:
            found = [e for name in buffers for e in self._rings[name] if e.seq > after]
        found.sort(key=lambda e: e.seq)
        return found

    def wait_for(self, after: int, timeout: float) -> None:
        """Block until an entry newer than ``after`` arrives or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after, timeout)

    def usage(self, name: str) -> int:
        with self._cond:
            return sum(len(e.tag) + len(e.message) + 28 for e in self._rings[name])


def _stamp(entry: LogEntry) -> str:
    when = datetime.datetime.fromtimestamp(entry.when)
    return when.strftime("%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def format_entry(entry: LogEntry, style: str) -> str:
    """One entry as `logcat -v STYLE` prints it (threadtime, brief, time, tag, process, raw)."""
    p, tag, msg = entry.priority, entry.tag, entry.message
    if style == "brief":
        return f"{p}/{tag:<8}({entry.pid:5d}): {msg}"
    if style == "time":
        return f"{_stamp(entry)} {p}/{tag:<8}({entry.pid:5d}): {msg}"
    if style == "tag":
        return f"{p}/{tag:<8}: {msg}"
    if style == "process":
        return f"{p}({entry.pid:5d}) {msg}  ({tag})"
    if style == "raw":
        return msg
    if style == "thread":
        return f"{p}({entry.pid:5d}:{entry.tid:5d}) {msg}"
    if style == "long":
        return f"[ {_stamp(entry)} {entry.pid:5d}:{entry.tid:5d} {p}/{tag} ]\n{msg}\n"
    return f"{_stamp(entry)} {entry.pid:5d} {entry.tid:5d} {p} {tag:<8}: {msg}"


_STYLES = {"brief", "time", "tag", "process", "raw", "thread", "long", "threadtime"}
_MODIFIERS = {"color", "descriptive", "epoch", "monotonic", "printable", "uid", "usec", "UTC"}
_VALUE_FLAGS = {"-b", "-v", "-t", "-T", "-m", "-e", "-f", "-r", "-n", "-G", "--pid"}


@dataclass
class _Query:
    buffers: tuple[str, ...] = DEFAULT_BUFFERS
    style: str = "threadtime"
    dump: bool = False
    clear: bool = False
    sizes: bool = False
    tail: int | None = None
    max_count: int | None = None
    pid: int | None = None
    regex: re.Pattern[str] | None = None
    default_level: str = "V"
    tag_levels: dict[str, str] | None = None

    def wants(self, entry: LogEntry) -> bool:
        if self.pid is not None and entry.pid != self.pid:
            return False
        levels = self.tag_levels or {}
        level = levels.get(entry.tag, levels.get("*", self.default_level))
        if level == _SILENT or PRIORITIES.index(entry.priority) < PRIORITIES.index(level):
            return False
        return self.regex is None or bool(self.regex.search(entry.message))


class _UsageError(VirtualAndroidError):
    pass


def _long(arg: str) -> list[str]:
    """`--buffer=main` -> ["-b", "main"]; `--clear` -> ["-c"]; anything else as it is."""
    name, eq, value = arg.partition("=")
    short = _LONG.get(name)
    if short is None:
        return [arg]
    return [short, value] if eq else [short]


_LONG = {
    "--clear": "-c",
    "--dump": "-d",
    "--buffer": "-b",
    "--format": "-v",
    "--regex": "-e",
    "--max-count": "-m",
    "--buffer-size": "-g",
    "--silent": "-s",
}


def _parse(args: list[str]) -> _Query:
    query = _Query(tag_levels={})
    buffers: list[str] = []
    args = [part for a in args for part in _long(a)]
    i = 0
    while i < len(args):
        arg = args[i]
        value = ""
        if arg.startswith("--pid="):
            arg, value = "--pid", arg[len("--pid=") :]
        elif arg in _VALUE_FLAGS:
            if i + 1 >= len(args):
                raise _UsageError(f"option requires an argument -- '{arg.lstrip('-')}'")
            i += 1
            value = args[i]
        elif len(arg) > 2 and arg[:2] in _VALUE_FLAGS and not arg.startswith("--"):
            arg, value = arg[:2], arg[2:]
        if arg == "-b":
            for name in value.split(","):
                if name == "all":
                    buffers.extend(BUFFERS)
                elif name == "default":
                    buffers.extend(DEFAULT_BUFFERS)
                elif name in BUFFERS:
                    buffers.append(name)
                elif name != "kernel":
                    raise _UsageError(f"unknown buffer {name}")
        elif arg == "-v":
            for word in value.split(","):
                if word in _STYLES:
                    query.style = word
                elif word not in _MODIFIERS:
                    raise _UsageError(f'Invalid parameter "{word}" to -v')
        elif arg in ("-t", "-T"):
            if not value.isdigit():
                raise _UsageError(f"invalid count {value}")
            query.tail = int(value)
            query.dump = query.dump or arg == "-t"
        elif arg == "-m":
            query.max_count = int(value) if value.isdigit() else None
        elif arg == "--pid":
            query.pid = int(value) if value.isdigit() else None
        elif arg == "-e":
            query.regex = re.compile(value)
        elif arg in ("-f", "-r", "-n", "-G"):
            pass  # output rotation and buffer resizing: accepted, nothing to do in memory
        elif arg == "-d":
            query.dump = True
        elif arg == "-c":
            query.clear = True
        elif arg == "-g":
            query.sizes = True
        elif arg == "-s":
            query.default_level = _SILENT
        elif arg in ("-D", "-B", "-Q"):
            pass
        elif arg.startswith("-"):
            raise _UsageError(f"invalid option -- '{arg.lstrip('-')[:1]}'")
        else:
            tag, _, level = arg.rpartition(":") if ":" in arg else (arg, "", "V")
            level = (level or "V").upper()[:1]
            if level not in PRIORITIES + _SILENT:
                raise _UsageError(f"Invalid filter expression '{arg}'")
            assert query.tag_levels is not None
            query.tag_levels[tag] = level
        i += 1
    if buffers:
        query.buffers = tuple(dict.fromkeys(buffers))
    return query


def cmd_logcat(ctx: CommandContext, logs: LogBuffer, chatter: Callable[[], None]) -> int:
    """`logcat`; while it follows a quiet log, ``chatter()`` writes what a phone's daemons
    always have to say."""
    try:
        query = _parse(ctx.argv[1:])
    except (_UsageError, re.error) as exc:
        ctx.error(f"logcat: {exc}\nFor more information, see 'logcat --help'.\n")
        return 1
    if query.clear:
        logs.clear(query.buffers)
        return 0
    if query.sizes:
        for name in query.buffers:
            used = logs.usage(name) // 1024
            ctx.write(
                f"{name}: ring buffer is {_RING_KIB} KiB ({used} KiB consumed, {_RING_KIB} KiB "
                "readable), max entry is 5120 B, max payload is 4068 B\n"
            )
        return 0
    printed = 0
    started: set[str] = set()
    last = 0

    def emit(batch: list[LogEntry]) -> bool:
        nonlocal printed
        out: list[str] = []
        for entry in batch:
            if entry.buffer not in started:
                started.add(entry.buffer)
                out.append(f"--------- beginning of {entry.buffer}")
            out.append(format_entry(entry, query.style))
            printed += 1
            if query.max_count is not None and printed >= query.max_count:
                break
        if out:
            ctx.write("\n".join(out) + "\n")
        return query.max_count is not None and printed >= query.max_count

    backlog = [e for e in logs.entries(query.buffers) if query.wants(e)]
    if backlog:
        last = backlog[-1].seq
    if query.tail is not None:
        backlog = backlog[-query.tail :] if query.tail else []
    everything = logs.entries(query.buffers)
    last = max(last, everything[-1].seq if everything else 0)
    if emit(backlog) or query.dump:
        return 0
    quiet_since = time.monotonic()
    while True:  # follow, as logcat does without -d, until the client goes away
        ctx.cancelled.check()
        logs.wait_for(last, 0.1)
        fresh = logs.entries(query.buffers, after=last)
        if fresh:
            quiet_since = time.monotonic()
            last = fresh[-1].seq
            if emit([e for e in fresh if query.wants(e)]):
                return 0
        elif time.monotonic() - quiet_since > _CHATTER_S:
            # A phone's log is never quiet for long: the thermal HAL reports its zones.
            quiet_since = time.monotonic()
            chatter()


def cmd_log(ctx: CommandContext, logs: LogBuffer) -> int:
    """toybox log: `log [-b BUFFER] [-p PRI] [-t TAG] MESSAGE...`."""
    args = ctx.argv[1:]
    tag, priority, buffer = "log", "I", "main"
    while args and args[0].startswith("-") and len(args) > 1:
        flag, value, args = args[0], args[1], args[2:]
        if flag == "-t":
            tag = value
        elif flag == "-p":
            priority = value.upper()[:1]
            if priority not in PRIORITIES:
                ctx.error(f"log: bad -p '{value}'\n")
                return 1
        elif flag == "-b":
            if value not in BUFFERS:
                ctx.error(f"log: unknown buffer '{value}'\n")
                return 1
            buffer = value
        else:
            ctx.error(f"log: Unknown option '{flag}'\n")
            return 1
    message = " ".join(args) if args else ctx.stdin.read().decode("utf-8", "replace")
    logs.write(tag, message, priority=priority, pid=ctx.shell.state.pid, buffer=buffer, uid="shell")
    return 0


def logd_commands(logs: LogBuffer, chatter: Callable[[], None]) -> dict[str, CommandHandler]:
    return {
        "logcat": lambda ctx: cmd_logcat(ctx, logs, chatter),
        "log": lambda ctx: cmd_log(ctx, logs),
    }
