"""The S24 shell's userland: toybox's applets (the framework's tools live with their system
services under system/)."""

from __future__ import annotations

import datetime
import posixpath
import re
import time
from collections.abc import Callable

from .applet import echo_escapes, err, split_opts
from .fileutils import (
    cmd_cat,
    cmd_chmod,
    cmd_cp,
    cmd_ls,
    cmd_mkdir,
    cmd_mv,
    cmd_rm,
    cmd_rmdir,
    cmd_stat,
    cmd_test,
    cmd_touch,
    hash_command,
)
from .interpreter import CommandContext, CommandHandler
from .sed import cmd_sed
from .textutils import (
    cmd_basename,
    cmd_cut,
    cmd_dirname,
    cmd_grep,
    cmd_head,
    cmd_sort,
    cmd_tail,
    cmd_tr,
    cmd_uniq,
    cmd_wc,
)

Handler = Callable[[CommandContext], int]


# -- basic ---------------------------------------------------------------------------
def cmd_true(ctx: CommandContext) -> int:
    return 0


def cmd_false(ctx: CommandContext) -> int:
    return 1


def cmd_echo(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    newline = True
    escapes = True  # mksh's echo interprets backslash escapes unless -E
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for flag in args[0][1:]:
            if flag == "n":
                newline = False
            elif flag == "e":
                escapes = True
            else:
                escapes = False
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text, stop = echo_escapes(text)
        if stop:
            newline = False
    ctx.write(text + ("\n" if newline else ""))
    return 0


def cmd_printf(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        err(ctx, "Needs 1 argument")
        return 1
    fmt, args = ctx.argv[1], ctx.argv[2:]
    fmt, _ = echo_escapes(fmt)
    status = 0
    out: list[str] = []
    index = 0
    first = True
    while first or index < len(args):
        first = False
        consumed = False

        def repl(match: re.Match[str]) -> str:
            nonlocal index, consumed, status
            spec, flags, width, precision, conv = match.group(0, 1, 2, 3, 4)
            if spec == "%%":
                return "%"
            value = args[index] if index < len(args) else ""
            index += 1
            consumed = True
            # C's flags in Python's spec: C right-aligns by default, '-' left-aligns.
            align = "<" if "-" in flags else ">"
            sign = "+" if "+" in flags else " " if " " in flags else ""
            if conv in "csb":
                text = value[:1] if conv == "c" else value
                text = echo_escapes(text)[0] if conv == "b" else text
                text = text[: int(precision[1:])] if precision else text
                return format(text, align + width)
            zero = "0" if "0" in flags and "-" not in flags else ""
            head = f"{'' if zero else align}{sign}{'#' if '#' in flags else ''}{zero}{width}"
            number = _c_number(value, float if conv in "feEgG" else int)
            if number is None:
                err(ctx, f"bad %{conv} {value}")
                status, number = 1, 0
            if conv in "feEgG":
                return format(float(number), f"{head}{precision}{conv}")
            return format(int(number), head + ("d" if conv in "diu" else conv))

        pattern = r"%([-+ #0]*)(\d*)((?:\.\d+)?)([diouxXfeEgGcsb%])"
        out.append(re.sub(pattern, repl, fmt))
        if not consumed:
            break
    ctx.write("".join(out))
    return status


def _c_number(value: str, kind: type[int] | type[float]) -> int | float | None:
    """printf's number from its argument, with strtol's bases (0x.., 0..); None if bad."""
    text = value.strip() or "0"
    try:
        if kind is float:
            return float(text)
        return int(text, 8) if re.fullmatch(r"[-+]?0[0-7]+", text) else int(text, 0)
    except ValueError:
        return None


def cmd_sleep(ctx: CommandContext) -> int:
    total = 0.0
    for arg in ctx.argv[1:]:
        match = re.fullmatch(r"(\d*\.?\d+)([smhd]?)", arg)
        if not match:
            err(ctx, f"Bad number '{arg}'")
            return 1
        factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        total += float(match.group(1)) * factor
    ctx.sleep(total)
    return 0


_GROUPS = (
    "2000(shell),1004(input),1007(log),1011(adb),1015(sdcard_rw),1028(sdcard_r),"
    "1078(ext_data_rw),1079(ext_obb_rw),3001(net_bt_admin),3002(net_bt),3003(inet),"
    "3006(net_bw_stats),3009(readproc),3011(uhid),3012(readtracefs)"
)


def cmd_id(ctx: CommandContext) -> int:
    opts, _ = split_opts(ctx.argv[1:], "ugGnrZ")
    groups = [g.partition("(") for g in _GROUPS.split(",")]
    if "G" in opts:
        ctx.write(" ".join(name[:-1] if "n" in opts else gid for gid, _, name in groups) + "\n")
    elif opts & {"u", "g"}:
        ctx.write("shell\n" if "n" in opts else "2000\n")
    else:
        ctx.write(f"uid=2000(shell) gid=2000(shell) groups={_GROUPS} context=u:r:shell:s0\n")
    return 0


def cmd_whoami(ctx: CommandContext) -> int:
    ctx.write("shell\n")
    return 0


def cmd_date(ctx: CommandContext) -> int:
    now = time.time()
    fmt = None
    utc = False
    for arg in ctx.argv[1:]:
        if arg.startswith("+"):
            fmt = arg[1:]
        elif arg == "-u":
            utc = True
    moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc if utc else None)
    if fmt is None:
        zone = "UTC" if utc else (moment.astimezone().tzname() or "UTC")
        ctx.write(moment.strftime(f"%a %b %e %H:%M:%S {zone} %Y") + "\n")
        return 0
    nanos = f"{int((now % 1) * 1e9):09d}"
    fmt = fmt.replace("%N", nanos).replace("%s", str(int(now)))
    ctx.write(moment.strftime(fmt) + "\n")
    return 0


def cmd_uptime(ctx: CommandContext) -> int:
    seconds = int(ctx.device.model.uptime())
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    load = ctx.device.loadavg()
    clock = time.strftime("%H:%M:%S")
    ctx.write(
        f" {clock} up {days} days, {hours:2d}:{minutes:02d},  0 users,  "
        f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}\n"
    )
    return 0


def cmd_toybox(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        ctx.write(" ".join(sorted(TOYBOX_APPLETS)) + "\n")
        return 0
    applet = ctx.argv[1]
    if applet not in TOYBOX_APPLETS:
        ctx.error(f"toybox: Unknown command {applet}\n")
        return 1
    handler = ctx.device.commands_snapshot().get(applet)
    if handler is None:
        ctx.error(f"toybox: Unknown command {applet}\n")
        return 1
    ctx.argv = ctx.argv[1:]
    return handler(ctx)


# -- processes ------------------------------------------------------------------------
def cmd_ps(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    show_all = False
    fields: list[str] | None = None
    pids: set[int] | None = None
    names: set[str] = set()
    users: set[str] | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-A", "-e", "-ef", "-Af"):
            show_all = True
        elif arg == "-o" and i + 1 < len(args):
            fields = [f.strip().upper() for f in args[i + 1].split(",") if f.strip()]
            i += 1
        elif arg == "-p" and i + 1 < len(args):
            pids = {int(p) for p in re.split(r"[ ,]", args[i + 1]) if p.isdigit()}
            show_all = True
            i += 1
        elif arg in ("-u", "-U") and i + 1 < len(args):
            users = (users or set()) | set(args[i + 1].split(","))
            show_all = True
            i += 1
        elif not arg.startswith("-"):
            if arg.isdigit():
                pids = (pids or set()) | {int(arg)}
            else:
                names.add(arg)
            show_all = True
        i += 1
    processes = ctx.device.process_list()
    if pids is not None:
        processes = [p for p in processes if p.pid in pids]
    if names:
        processes = [p for p in processes if p.name in names]
    if users is not None:
        uids = {"root": "0", "system": "1000", "shell": "2000"}
        processes = [p for p in processes if p.uid in users or uids.get(p.uid, "") in users]
    if not show_all:
        processes = [p for p in processes if p.uid == "shell" and p.session == ctx.shell.state.pid]
    columns = fields or ["USER", "PID", "PPID", "VSZ", "RSS", "WCHAN", "ADDR", "S", "NAME"]
    widths = {"USER": -10, "PID": 5, "PPID": 5, "VSZ": 8, "RSS": 6, "WCHAN": -16, "ADDR": 1, "S": 1}
    rows: list[list[str]] = []
    for proc in processes:
        values = {
            "USER": proc.uid,
            "UID": proc.uid,
            "PID": str(proc.pid),
            "PPID": str(proc.ppid),
            "VSZ": str(proc.vsz_kb),
            "RSS": str(proc.rss_kb),
            "WCHAN": "0",
            "ADDR": "0",
            "S": "S",
            "STAT": "S",
            "NAME": proc.name,
            "COMM": proc.name[:15],
            "CMD": proc.name,
            "ARGS": proc.args or proc.name,
            "CMDLINE": proc.args or proc.name,
            "%CPU": "0.0",
            "%MEM": f"{proc.rss_kb / 75000:.1f}",
            "TIME": "00:00:00",
            "PRI": "19",
            "NI": "0",
            "TTY": "?",
        }
        rows.append([values.get(c, "?") for c in columns])

    def fmt(cells: list[str]) -> str:
        out = []
        for column, cell in zip(columns, cells, strict=True):
            width = widths.get(column, 0)
            if column in ("NAME", "ARGS", "CMDLINE", "CMD") and column == columns[-1]:
                out.append(cell)
            elif width < 0:
                out.append(cell.ljust(-width))
            else:
                out.append(cell.rjust(width))
        return " ".join(out).rstrip()

    ctx.write(fmt(columns) + "\n")
    for row in rows:
        ctx.write(fmt(row) + "\n")
    return 0


def cmd_pidof(ctx: CommandContext) -> int:
    args = [a for a in ctx.argv[1:] if not a.startswith("-")]
    single = "-s" in ctx.argv[1:]
    found: list[str] = []
    for proc in sorted(ctx.device.process_list(), key=lambda p: -p.pid):
        if proc.name in args or (posixpath.basename(proc.args.split(" ")[0]) in args and proc.args):
            found.append(str(proc.pid))
            if single:
                break
    if not found:
        return 1
    ctx.write(" ".join(found) + "\n")
    return 0


def cmd_kill(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if args[:1] == ["-l"]:
        ctx.write("HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM\n")
        return 0
    if args[:1] == ["-s"]:
        args = args[2:]
    targets = [a for a in args if not a.startswith("-")]
    if not targets:
        err(ctx, "Needs 1 argument")
        return 1
    status = 0
    for target in targets:
        if not target.lstrip("-").isdigit():
            err(ctx, f"{target}: bad pid")
            status = 1
            continue
        problem = ctx.device.kill_from_shell(int(target))
        if problem:
            err(ctx, f"pid {target}: {problem}")
            status = 1
    return status


TOYBOX_APPLETS = {
    "basename",
    "cat",
    "chmod",
    "cp",
    "cut",
    "date",
    "dirname",
    "echo",
    "false",
    "grep",
    "head",
    "id",
    "kill",
    "ls",
    "md5sum",
    "mkdir",
    "mv",
    "pidof",
    "printf",
    "ps",
    "rm",
    "rmdir",
    "sed",
    "sha1sum",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "test",
    "touch",
    "tr",
    "true",
    "uniq",
    "uptime",
    "wc",
    "whoami",
}


def builtin_commands() -> dict[str, CommandHandler]:
    """The emulated commands every virtual S24 has."""
    table: dict[str, CommandHandler] = {
        "true": cmd_true,
        "false": cmd_false,
        "echo": cmd_echo,
        "printf": cmd_printf,
        "sleep": cmd_sleep,
        "id": cmd_id,
        "whoami": cmd_whoami,
        "date": cmd_date,
        "uptime": cmd_uptime,
        "cat": cmd_cat,
        "ls": cmd_ls,
        "rm": cmd_rm,
        "rmdir": cmd_rmdir,
        "mkdir": cmd_mkdir,
        "touch": cmd_touch,
        "chmod": cmd_chmod,
        "cp": cmd_cp,
        "mv": cmd_mv,
        "md5sum": hash_command("md5"),
        "sha1sum": hash_command("sha1"),
        "sha256sum": hash_command("sha256"),
        "stat": cmd_stat,
        "test": cmd_test,
        "[": cmd_test,
        "grep": cmd_grep,
        "head": cmd_head,
        "tail": cmd_tail,
        "wc": cmd_wc,
        "sort": cmd_sort,
        "sed": cmd_sed,
        "uniq": cmd_uniq,
        "cut": cmd_cut,
        "tr": cmd_tr,
        "basename": cmd_basename,
        "dirname": cmd_dirname,
        "toybox": cmd_toybox,
        "ps": cmd_ps,
        "pidof": cmd_pidof,
        "kill": cmd_kill,
    }
    return table


__all__ = ["builtin_commands"]
