"""The S24 shell's userland: toybox's applets (the framework's tools live with their system
services under system/)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import posixpath
import re
import stat as statmod
import time
from collections.abc import Callable, Iterable, Iterator

from ..fs.filesystem import FsError, StatResult
from .interpreter import CommandContext, CommandHandler
from .options import parse_options
from .sed import bre_to_python, cmd_sed
from .shellio import BytesInput, Input, Output

Handler = Callable[[CommandContext], int]


def _err(ctx: CommandContext, message: str) -> None:
    ctx.error(f"{ctx.name}: {message}\n")


def _split_opts(args: list[str], flags: str) -> tuple[set[str], list[str]]:
    """Split short boolean flags (clustered, like -rf) from operands."""
    opts, _, operands = parse_options(args, flags)
    return opts, operands


def _at_least(ctx: CommandContext, count: int, flags: str) -> list[str] | None:
    """The operands (flags ignored), or None once `Needs N arguments` is said."""
    _opts, operands = _split_opts(ctx.argv[1:], flags)
    if len(operands) >= count:
        return operands
    _err(ctx, f"Needs {count} argument{'s' if count > 1 else ''}")
    return None


def _stat_each(
    ctx: CommandContext, names: list[str], follow: bool
) -> Iterator[tuple[str, StatResult | None]]:
    """(name, its stat) for each operand, or (name, None) once `NAME: why` is said."""
    for name in names:
        try:
            yield name, ctx.fs.stat(name, ctx.cwd, follow=follow)
        except FsError as exc:
            _err(ctx, f"{name}: {exc}")
            yield name, None


def _each(
    ctx: CommandContext, names: list[str], change: Callable[[str], None], quote: bool = False
) -> int:
    """change(name) for each operand; a failure is reported (`NAME: why`, toybox quotes the
    name for mkdir and touch) and the command goes on to the next, ending with status 1."""
    status = 0
    for name in names:
        try:
            change(name)
        except FsError as exc:
            _err(ctx, f"'{name}': {exc}" if quote else f"{name}: {exc}")
            status = 1
    return status


# -- basic ---------------------------------------------------------------------------
def cmd_true(ctx: CommandContext) -> int:
    return 0


def cmd_false(ctx: CommandContext) -> int:
    return 1


def _echo_escapes(text: str) -> tuple[str, bool]:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            mapping = {
                "n": "\n",
                "t": "\t",
                "\\": "\\",
                "r": "\r",
                "a": "\a",
                "b": "\b",
                "e": "\x1b",
                "f": "\f",
                "v": "\v",
            }
            if nxt == "c":
                return "".join(out), True
            if nxt in mapping:
                out.append(mapping[nxt])
                i += 2
                continue
            if nxt == "0":
                match = re.match(r"0([0-7]{0,3})", text[i + 1 :])
                assert match
                out.append(chr(int(match.group(1) or "0", 8)))
                i += 1 + len(match.group(0))
                continue
        out.append(ch)
        i += 1
    return "".join(out), False


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
        text, stop = _echo_escapes(text)
        if stop:
            newline = False
    ctx.write(text + ("\n" if newline else ""))
    return 0


def cmd_printf(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        _err(ctx, "Needs 1 argument")
        return 1
    fmt, args = ctx.argv[1], ctx.argv[2:]
    fmt, _ = _echo_escapes(fmt)
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
                text = _echo_escapes(text)[0] if conv == "b" else text
                text = text[: int(precision[1:])] if precision else text
                return format(text, align + width)
            zero = "0" if "0" in flags and "-" not in flags else ""
            head = f"{'' if zero else align}{sign}{'#' if '#' in flags else ''}{zero}{width}"
            number = _c_number(value, float if conv in "feEgG" else int)
            if number is None:
                _err(ctx, f"bad %{conv} {value}")
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
            _err(ctx, f"Bad number '{arg}'")
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
    opts, _ = _split_opts(ctx.argv[1:], "ugGnrZ")
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


# -- files -----------------------------------------------------------------------------
def _read_inputs(ctx: CommandContext, operands: list[str]) -> Iterator[tuple[str, Input | None]]:
    """Yield (name, input) per operand; stdin for none or '-'; input None after an error."""
    from .shellio import BytesInput

    if not operands:
        yield "-", ctx.stdin
        return
    for name in operands:
        if name == "-":
            yield name, ctx.stdin
            continue
        try:
            yield name, BytesInput(ctx.fs.read(name, ctx.cwd))
        except FsError as exc:
            _err(ctx, f"{name}: {exc}")
            yield name, None


def cmd_cat(ctx: CommandContext) -> int:
    _opts, operands = _split_opts(ctx.argv[1:], "uvte")
    for arg in operands:
        if arg.startswith("-") and len(arg) > 1:
            # toybox names the cluster from its first unknown letter on.
            unknown = arg[1:].lstrip("uvte")
            _err(ctx, f"Unknown option '{unknown}' (see \"cat --help\")")
            return 1
    status = 0
    for _name, source in _read_inputs(ctx, operands):
        if source is None:
            status = 1
            continue
        while True:
            chunk = source.read_chunk()
            if not chunk:
                break
            ctx.stdout.write(chunk)
    return status


def _mode_string(mode: int) -> str:
    return statmod.filemode(mode)


def _owner(uid: int) -> str:
    return {0: "root", 2000: "shell", 1000: "system", 1023: "media_rw", 9997: "everybody"}.get(
        uid, str(uid)
    )


def _ls_line(info: StatResult, name: str, ctx: CommandContext) -> str:
    when = datetime.datetime.fromtimestamp(info.mtime).strftime("%Y-%m-%d %H:%M")
    line = (
        f"{_mode_string(info.mode)} {info.nlink:>2} {_owner(info.uid):<6} {_owner(info.gid):<6} "
        f"{info.size:>8} {when} {name}"
    )
    if info.is_link:
        with contextlib.suppress(FsError):
            line += " -> " + ctx.fs.readlink(info.path)
    return line


def cmd_ls(ctx: CommandContext) -> int:
    opts, operands = _split_opts(ctx.argv[1:], "laAd1RhtrsSFnZ")
    long = "l" in opts or "n" in opts
    status = 0
    targets = operands or ["."]
    files: list[tuple[str, StatResult]] = []
    dirs: list[str] = []
    for target, info in _stat_each(ctx, targets, follow=True):
        if info is None:
            status = 1
            continue
        if info.is_dir and "d" not in opts:
            dirs.append(target)
        else:
            lst = ctx.fs.stat(target, ctx.cwd, follow=False)
            files.append((target, lst))

    def emit(entries: list[tuple[str, StatResult]]) -> None:
        if "t" in opts:
            entries.sort(key=lambda item: -item[1].mtime)
        if "r" in opts:
            entries.reverse()
        for name, info in entries:
            suffix = "/" if "F" in opts and info.is_dir else ""
            ctx.write((_ls_line(info, name, ctx) if long else name + suffix) + "\n")

    emit(files)
    recursive = "R" in opts
    pending = list(dirs)
    index = -1
    while pending:
        directory = pending.pop(0)
        index += 1
        if len(targets) > 1 or recursive:
            if files or index:
                ctx.write("\n")
            ctx.write(f"{directory}:\n")
        try:
            names = ctx.fs.listdir(directory, ctx.cwd)
        except FsError as exc:
            _err(ctx, f"{directory}: {exc}")
            status = 1
            continue
        if "a" not in opts and "A" not in opts:
            names = [n for n in names if not n.startswith(".")]
        entries: list[tuple[str, StatResult]] = []
        base = ctx.fs.normpath(directory, ctx.cwd)
        if "a" in opts:
            entries.append((".", ctx.fs.stat(base)))
            entries.append(("..", ctx.fs.stat(posixpath.dirname(base) or "/")))
        for name in names:
            try:
                entries.append((name, ctx.fs.stat(posixpath.join(base, name), follow=False)))
            except FsError:
                continue
        if long:
            blocks = sum((e[1].size + 4095) // 4096 * 4 for e in entries)
            ctx.write(f"total {blocks}\n")
        emit(entries)
        if recursive:  # depth first, in listing order, as toybox ls -R walks
            below = [
                posixpath.join(directory, name)
                for name, info in entries
                if info.is_dir and name not in (".", "..")
            ]
            pending[:0] = below
    return status


def cmd_rm(ctx: CommandContext) -> int:
    opts, operands = _split_opts(ctx.argv[1:], "rRfvd")
    recursive = "r" in opts or "R" in opts
    force = "f" in opts
    status = 0
    if not operands and not force:
        _err(ctx, "Needs 1 argument")
        return 1
    for target in operands:
        try:
            ctx.fs.remove(target, ctx.cwd, recursive=recursive, dir_ok="d" in opts)
        except FsError as exc:
            if force and str(exc) == "No such file or directory":
                continue
            message = str(exc)
            if message == "Is a directory":
                _err(ctx, f"{target}: Is a directory")
            else:
                _err(ctx, f"{target}: {message}")
            status = 1
    return status


def cmd_rmdir(ctx: CommandContext) -> int:
    def remove(target: str) -> None:
        if not ctx.fs.is_dir(target, ctx.cwd):
            missing = not ctx.fs.exists(target, ctx.cwd)
            raise FsError(target, "No such file or directory" if missing else "Not a directory")
        ctx.fs.remove(target, ctx.cwd, recursive=False, dir_ok=True)

    return _each(ctx, [a for a in ctx.argv[1:] if not a.startswith("-")], remove)


def cmd_mkdir(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    mode = 0o771
    if "-m" in args:
        index = args.index("-m")
        try:
            mode = int(args[index + 1], 8)
        except (IndexError, ValueError):
            _err(ctx, "bad mode")
            return 1
        args = args[:index] + args[index + 2 :]
    opts, operands = _split_opts(args, "pv")
    if not operands:
        _err(ctx, "Needs 1 argument")
        return 1
    return _each(
        ctx, operands, lambda t: ctx.fs.mkdir(t, ctx.cwd, parents="p" in opts, mode=mode), True
    )


def cmd_touch(ctx: CommandContext) -> int:
    _opts, operands = _split_opts(ctx.argv[1:], "acm")
    return _each(ctx, operands, lambda target: ctx.fs.touch(target, ctx.cwd), quote=True)


def _parse_chmod(spec: str, old: int) -> int | None:
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    mode = old & 0o7777
    for clause in spec.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])([rwx]*)", clause)
        if not match:
            return None
        who = match.group(1) or "a"
        bits = 0
        for perm in match.group(3):
            value = {"r": 4, "w": 2, "x": 1}[perm]
            for target in who:
                shifts = {"u": [6], "g": [3], "o": [0], "a": [6, 3, 0]}[target]
                for shift in shifts:
                    bits |= value << shift
        if match.group(2) == "+":
            mode |= bits
        elif match.group(2) == "-":
            mode &= ~bits
        else:
            mask = 0
            for target in who:
                for shift in {"u": [6], "g": [3], "o": [0], "a": [6, 3, 0]}[target]:
                    mask |= 7 << shift
            mode = (mode & ~mask) | bits
    return mode


def cmd_chmod(ctx: CommandContext) -> int:
    operands = _at_least(ctx, 2, "Rfv")
    if operands is None:
        return 1
    spec, targets = operands[0], operands[1:]
    if _parse_chmod(spec, 0) is None:
        _err(ctx, f"bad mode '{spec}'")
        return 1

    def change(target: str) -> None:
        mode = _parse_chmod(spec, ctx.fs.stat(target, ctx.cwd).mode)
        assert mode is not None  # a spec that parses parses against any old mode
        ctx.fs.chmod(target, mode, ctx.cwd)

    return _each(ctx, targets, change)


def cmd_cp(ctx: CommandContext) -> int:
    operands = _at_least(ctx, 2, "rRfpaiv")
    if operands is None:
        return 1
    *sources, dest = operands

    def copy(source: str) -> None:
        target = dest
        if ctx.fs.is_dir(dest, ctx.cwd):
            target = posixpath.join(dest, posixpath.basename(source))
        info = ctx.fs.stat(source, ctx.cwd)
        ctx.fs.write(target, ctx.fs.read(source, ctx.cwd), ctx.cwd, mode=info.mode & 0o7777)

    return _each(ctx, sources, copy)


def cmd_mv(ctx: CommandContext) -> int:
    operands = _at_least(ctx, 2, "fivn")
    if operands is None:
        return 1
    *sources, dest = operands
    return _each(ctx, sources, lambda source: ctx.fs.rename(source, dest, ctx.cwd))


def _hash_command(algorithm: str) -> Handler:
    def handler(ctx: CommandContext) -> int:
        _opts, operands = _split_opts(ctx.argv[1:], "bc")
        status = 0
        for name, source in _read_inputs(ctx, operands):
            if source is None:
                status = 1
                continue
            digest = hashlib.new(algorithm)
            while True:
                chunk = source.read_chunk()
                if not chunk:
                    break
                digest.update(chunk)
            ctx.write(f"{digest.hexdigest()}  {name}\n")
        return status

    return handler


def _stat_format(fmt: str, info: StatResult, name: str, ctx: CommandContext) -> str:
    kind = (
        "directory"
        if info.is_dir
        else "symbolic link"
        if info.is_link
        else ("regular file" if info.size else "regular empty file")
    )

    def when(seconds: int) -> str:
        return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S.000000000 %z")

    table: dict[str, str] = {
        "n": name,
        "N": name if not info.is_link else f"'{name}' -> '{ctx.fs.readlink(info.path)}'",
        "s": str(info.size),
        "a": f"{info.mode & 0o7777:o}",
        "A": _mode_string(info.mode),
        "f": f"{info.mode:x}",
        "F": kind,
        "u": str(info.uid),
        "g": str(info.gid),
        "U": _owner(info.uid),
        "G": _owner(info.gid),
        "h": str(info.nlink),
        "b": str((info.size + 511) // 512),
        "B": "512",
        "o": "4096",
        "i": str(abs(hash(info.path)) % 1000000),
        "d": "64773",
        "D": "fd05",
        "X": str(info.mtime),
        "Y": str(info.mtime),
        "Z": str(info.mtime),
        "x": when(info.mtime),
        "y": when(info.mtime),
        "z": when(info.mtime),
        "%": "%",
    }
    return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), fmt)


def cmd_stat(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    fmt: str | None = None
    follow = False
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--format") and i + 1 < len(args):
            fmt = args[i + 1]
            i += 2
            continue
        if arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
        elif arg == "-L":
            follow = True
        elif arg == "-t":
            fmt = "%n %s %b %f %u %g %D %i %h %t %T %X %Y %Z %o"
        elif arg.startswith("-") and len(arg) > 1:
            pass
        else:
            operands.append(arg)
        i += 1
    if not operands:
        _err(ctx, "Needs 1 argument")
        return 1
    status = 0
    for name, info in _stat_each(ctx, operands, follow):
        if info is None:
            status = 1
            continue
        if fmt is not None:
            ctx.write(_stat_format(fmt, info, name, ctx) + "\n")
            continue
        text = (
            "  File: %N\n"
            "  Size: %s\t Blocks: %b\t IO Blocks: 4096\t%F\n"
            "Device: fd05h/64773d\t Inode: %i\t Links: %h\n"
            "Access: (%a/%A)\tUid: (%u/%U)\tGid: (%g/%G)\n"
            "Access: %x\nModify: %y\nChange: %z\n"
        )
        ctx.write(_stat_format(text, info, name, ctx))
    return status


def cmd_test(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if ctx.name == "[":
        if not args or args[-1] != "]":
            _err(ctx, "missing ]")
            return 2
        args = args[:-1]
    try:
        return 0 if _test_expr(ctx, args) else 1
    except ValueError as exc:
        _err(ctx, str(exc))
        return 2


def _test_expr(ctx: CommandContext, args: list[str]) -> bool:
    if "-o" in args:
        index = args.index("-o")
        return _test_expr(ctx, args[:index]) or _test_expr(ctx, args[index + 1 :])
    if "-a" in args[1:]:
        index = args.index("-a", 1)
        return _test_expr(ctx, args[:index]) and _test_expr(ctx, args[index + 1 :])
    if args and args[0] == "!":
        return not _test_expr(ctx, args[1:])
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, operand = args
        fs = ctx.fs
        if op == "-z":
            return operand == ""
        if op == "-n":
            return operand != ""
        node_ops = {"-e", "-f", "-d", "-s", "-r", "-w", "-x", "-L", "-h", "-b", "-c", "-p", "-S"}
        if op in node_ops:
            try:
                info = fs.stat(operand, ctx.cwd, follow=op not in ("-L", "-h"))
            except FsError:
                return False
            if op == "-e":
                return True
            if op == "-f":
                return info.is_file
            if op == "-d":
                return info.is_dir
            if op == "-s":
                return info.size > 0
            if op in ("-L", "-h"):
                return info.is_link
            if op == "-r":
                return bool(info.mode & 0o444)
            if op == "-w":
                return fs.writable(fs.resolve(operand, ctx.cwd))
            if op == "-x":
                return bool(info.mode & 0o111)
            return False
        raise ValueError(f"{op}: unknown operand")
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        numeric = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
        if op in numeric:
            try:
                a, b = int(left), int(right)
            except ValueError:
                raise ValueError("bad number") from None
            return {
                "-eq": a == b,
                "-ne": a != b,
                "-lt": a < b,
                "-le": a <= b,
                "-gt": a > b,
                "-ge": a >= b,
            }[op]
        if op in ("<", ">"):
            return left < right if op == "<" else left > right
    raise ValueError("syntax error")


# -- text filters ----------------------------------------------------------------------
def cmd_grep(ctx: CommandContext) -> int:
    opts, values, operands = parse_options(ctx.argv[1:], "viclnqEFwoHhsx", "em", long=True)
    patterns = [value for option, value in values if option == "e"]
    counts = [int(value) for option, value in values if option == "m" and value.isdigit()]
    max_count = counts[-1] if counts else None
    if not patterns:
        if not operands:
            _err(ctx, "Needs 1 argument")
            return 2
        patterns = [operands.pop(0)]
    flags = re.IGNORECASE if "i" in opts else 0
    compiled = []
    for pattern in patterns:
        regex = re.escape(pattern) if "F" in opts else bre_to_python(pattern, "E" in opts)
        if "w" in opts:
            regex = rf"\b(?:{regex})\b"
        if "x" in opts:
            regex = rf"^(?:{regex})$"
        try:
            compiled.append(re.compile(regex, flags))
        except re.error:
            _err(ctx, f"bad regex '{pattern}'")
            return 2
    show_names = (len(operands) > 1 and "h" not in opts) or "H" in opts
    invert = "v" in opts
    number_lines = "n" in opts
    list_lines = "c" not in opts and "l" not in opts
    only_matching = "o" in opts and not invert
    # Output lines are batched and written at once: before anything goes to stderr, before
    # a read that may block (a pipe, the session's stdin) and at the end, so the bytes and
    # their order stay the same while a grep over files costs one write, not one a line.
    pending: list[str] = []
    stdout, stderr = ctx.stdout, ctx.stderr

    def flush() -> None:
        if pending:
            data = "".join(pending)
            pending.clear()
            stdout.write(data)

    ctx.stderr = _FlushFirst(stderr, flush)
    search = compiled[0].search if len(compiled) == 1 else None
    found = False
    missing = False
    try:
        for name in operands or ["-"]:
            # What _read_inputs does, without wrapping each file in a BytesInput.
            lines: Iterable[str]
            if name == "-":
                lines = _input_lines(ctx.stdin, flush)
            else:
                try:
                    lines = _text_lines(ctx.fs.read(name, ctx.cwd))
                except FsError as exc:
                    _err(ctx, f"{name}: {exc}")
                    missing = True
                    continue
            count = 0
            number = 0
            name_prefix = f"{name}:" if show_names else ""
            for line in lines:
                number += 1
                hit = bool(search(line)) if search else any(p.search(line) for p in compiled)
                if hit == invert:
                    continue
                found = True
                count += 1
                if "q" in opts:
                    flush()
                    return 0
                if list_lines:
                    prefix = name_prefix + (f"{number}:" if number_lines else "")
                    if only_matching:
                        for expression in compiled:
                            for match in expression.finditer(line):
                                pending.append(prefix + match.group(0) + "\n")
                    else:
                        pending.append(prefix + line + "\n")
                if max_count is not None and count >= max_count:
                    break
            if "c" in opts:
                pending.append(name_prefix + f"{count}\n")
            elif "l" in opts and count:
                pending.append(f"{name if name != '-' else '(standard input)'}\n")
        flush()
    finally:
        ctx.stderr = stderr
    return 2 if missing else 0 if found else 1


class _FlushFirst(Output):
    """An output that calls flush() before each write (keeps stdout/stderr in order)."""

    def __init__(self, target: Output, flush: Callable[[], None]) -> None:
        self._target = target
        self._flush = flush

    def write_bytes(self, data: bytes) -> None:
        self._flush()
        self._target.write_bytes(data)

    def close(self) -> None:
        self._target.close()


def _text_lines(data: bytes) -> list[str]:
    """What Input.lines() yields for data, decoded and without the newlines."""
    text = data.decode("utf-8", "surrogateescape")
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def _input_lines(source: Input, before_read: Callable[[], None]) -> Iterator[str]:
    """The lines of source.lines(), decoded and without their newline.

    A BytesInput never blocks: it is split at once. Otherwise before_read() is called
    whenever the next read may block (a pipe, the session's stdin).
    """
    if isinstance(source, BytesInput):
        yield from _text_lines(source.read())
        return
    while True:
        if not source.has_buffered_line():
            before_read()
        raw = source.readline()
        if not raw:
            return
        yield raw.decode("utf-8", "surrogateescape").rstrip("\n")


def _count_arg(args: list[str], default: int) -> tuple[int, bool, list[str]]:
    """Parse -n N / -N / -n +N for head and tail; returns (count, from_start, rest)."""
    count = default
    from_start = False
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg in ("-n", "-c") and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif re.fullmatch(r"-n[+-]?\d+", arg):
            value = arg[2:]
        elif re.fullmatch(r"-\d+", arg):
            value = arg[1:]
        else:
            rest.append(arg)
        if value is not None:
            from_start = value.startswith("+")
            count = abs(int(value))
        i += 1
    return count, from_start, rest


def cmd_head(ctx: CommandContext) -> int:
    count, _, operands = _count_arg(ctx.argv[1:], 10)
    return _head_or_tail(ctx, operands, lambda source: _head(source, count, "-c" in ctx.argv))


def _head(source: Input, count: int, in_bytes: bool) -> Iterator[bytes]:
    if in_bytes:
        yield source.read()[:count]
        return
    for index, line in enumerate(source.lines()):
        if index >= count:
            break
        yield line


def cmd_tail(ctx: CommandContext) -> int:
    count, from_start, operands = _count_arg(ctx.argv[1:], 10)
    operands = [o for o in operands if o not in ("-f", "-F")]

    def tail(source: Input) -> list[bytes]:
        lines = list(source.lines())
        return lines[max(0, count - 1) :] if from_start else lines[-count:] if count else []

    return _head_or_tail(ctx, operands, tail)


def _head_or_tail(
    ctx: CommandContext, operands: list[str], select: Callable[[Input], Iterable[bytes]]
) -> int:
    """Each input's selected part; with several files each under a `==> NAME <==` header,
    a blank line between them, as toybox prints them."""
    status = 0
    for index, (name, source) in enumerate(_read_inputs(ctx, operands)):
        if source is None:
            status = 1
            continue
        if len(operands) > 1:
            ctx.write(("\n" if index else "") + f"==> {name} <==\n")
        for piece in select(source):
            ctx.write(piece)
    return status


def cmd_wc(ctx: CommandContext) -> int:
    opts, operands = _split_opts(ctx.argv[1:], "lwcm")
    if not opts:
        opts = {"l", "w", "c"}
    status = 0
    rows: list[tuple[list[int], str]] = []
    for name, source in _read_inputs(ctx, operands):
        if source is None:
            status = 1
            continue
        data = source.read()
        counts: list[int] = []
        if "l" in opts:
            counts.append(data.count(b"\n"))
        if "w" in opts:
            counts.append(len(data.split()))
        if "c" in opts or "m" in opts:
            counts.append(len(data))
        rows.append((counts, "" if name == "-" else f" {name}"))
    if len(operands) > 1:
        rows.append(([sum(c) for c in zip(*(r[0] for r in rows), strict=True)], " total"))
    # toybox pads the counts to 7 columns for several files (then adds a total) and for
    # several counts of stdin; one file's counts are bare.
    pad = len(operands) > 1 or (not operands and len(opts) > 1)
    for counts, label in rows:
        ctx.write(" ".join(f"{c:>7}" if pad else str(c) for c in counts) + label + "\n")
    return status


def cmd_sort(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    separator: str | None = None
    fields: tuple[int, int | None] | None = None
    numeric_key = False
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg[:2] in ("-t", "-k") and (len(arg) > 2 or i + 1 < len(args)):
            value = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            if arg[:2] == "-t":
                separator = value
                continue
            match = re.fullmatch(r"(\d+)(?:\.\d+)?(?:,(\d+)(?:\.\d+)?)?([nr]*)", value)
            if match is None:
                _err(ctx, f"bad -k '{value}'")
                return 1
            fields = (int(match.group(1)), int(match.group(2)) if match.group(2) else None)
            numeric_key = "n" in match.group(3)
            continue
        rest.append(arg)
        i += 1
    opts, operands = _split_opts(rest, "rnu")
    lines: list[str] = []
    for _name, source in _read_inputs(ctx, operands):
        if source is not None:
            lines.extend(
                line.decode("utf-8", "surrogateescape").rstrip("\n") for line in source.lines()
            )

    def field_text(line: str) -> str:
        if fields is None:
            return line
        parts = line.split(separator) if separator is not None else line.split()
        first, last = fields
        return (separator or " ").join(parts[first - 1 : last])

    def number(text: str) -> float:
        match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
        return float(match.group(1)) if match else 0.0

    if "n" in opts or numeric_key:
        # Equal numbers fall back to the whole line, as toybox orders them.
        lines.sort(key=lambda line: (number(field_text(line)), line), reverse="r" in opts)
    else:
        lines.sort(key=lambda line: (field_text(line), line), reverse="r" in opts)
    if "u" in opts:
        lines = list(dict.fromkeys(lines))
    for line in lines:
        ctx.write(line + "\n")
    return 0


def cmd_uniq(ctx: CommandContext) -> int:
    opts, operands = _split_opts(ctx.argv[1:], "cdu")
    sources = list(_read_inputs(ctx, operands[:1]))
    if sources[0][1] is None:
        return 1
    runs: list[list[bytes]] = []
    for line in sources[0][1].lines():
        if runs and runs[-1][0].rstrip(b"\n") == line.rstrip(b"\n"):
            runs[-1].append(line)
        else:
            runs.append([line])
    for run in runs:
        if ("d" in opts and len(run) < 2) or ("u" in opts and len(run) > 1):
            continue
        text = run[0] if run[0].endswith(b"\n") else run[0] + b"\n"
        ctx.write(f"{len(run):>7} ".encode() + text if "c" in opts else text)
    return 0


def cmd_cut(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    delim = "\t"
    spec = ""
    chars = False
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-d"):
            delim = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            continue
        if arg[:2] in ("-f", "-c"):
            chars = arg[:2] == "-c"
            spec = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            continue
        operands.append(arg)
        i += 1
    wanted: set[int] = set()
    for piece in spec.split(","):
        if "-" in piece:
            lo, _, hi = piece.partition("-")
            wanted.update(range(int(lo or 1), int(hi or 4096) + 1))
        elif piece:
            wanted.add(int(piece))
    for _name, source in _read_inputs(ctx, operands):
        if source is None:
            continue
        for raw in source.lines():
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            if chars:
                ctx.write("".join(c for n, c in enumerate(line, 1) if n in wanted) + "\n")
                continue
            parts = line.split(delim)
            if len(parts) == 1:
                ctx.write(line + "\n")
                continue
            ctx.write(delim.join(p for n, p in enumerate(parts, 1) if n in wanted) + "\n")
    return 0


def cmd_tr(ctx: CommandContext) -> int:
    opts, operands = _split_opts(ctx.argv[1:], "d")
    data = ctx.stdin.read().decode("utf-8", "surrogateescape")

    def expand(spec: str) -> str:
        spec, _ = _echo_escapes(spec)
        return re.sub(
            r"(.)-(.)",
            lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)),
            spec,
        )

    if "d" in opts and operands:
        drop = set(expand(operands[0]))
        ctx.write("".join(c for c in data if c not in drop))
        return 0
    if len(operands) < 2:
        _err(ctx, "Needs 2 arguments")
        return 1
    src, dst = expand(operands[0]), expand(operands[1])
    dst = dst + dst[-1:] * max(0, len(src) - len(dst))
    ctx.write(data.translate(str.maketrans(src, dst[: len(src)])))
    return 0


def cmd_basename(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        return 1
    name = posixpath.basename(ctx.argv[1].rstrip("/")) or "/"
    if len(ctx.argv) > 2 and name.endswith(ctx.argv[2]):
        name = name[: -len(ctx.argv[2])]
    ctx.write(name + "\n")
    return 0


def cmd_dirname(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        return 1
    ctx.write((posixpath.dirname(ctx.argv[1].rstrip("/")) or ".") + "\n")
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
        _err(ctx, "Needs 1 argument")
        return 1
    status = 0
    for target in targets:
        if not target.lstrip("-").isdigit():
            _err(ctx, f"{target}: bad pid")
            status = 1
            continue
        problem = ctx.device.kill_from_shell(int(target))
        if problem:
            _err(ctx, f"pid {target}: {problem}")
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
        "md5sum": _hash_command("md5"),
        "sha1sum": _hash_command("sha1"),
        "sha256sum": _hash_command("sha256"),
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
