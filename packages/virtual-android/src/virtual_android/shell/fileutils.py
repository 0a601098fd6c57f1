"""toybox's file applets: cat, ls, rm, rmdir, mkdir, touch, chmod, cp, mv, the hashes,
stat and test."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import posixpath
import re
import stat as statmod
from collections.abc import Callable

from ..fs.filesystem import FsError, StatResult
from .applet import at_least, each, err, read_inputs, split_opts, stat_each
from .interpreter import CommandContext

Handler = Callable[[CommandContext], int]


def cmd_cat(ctx: CommandContext) -> int:
    _opts, operands = split_opts(ctx.argv[1:], "uvte")
    for arg in operands:
        if arg.startswith("-") and len(arg) > 1:
            # toybox names the cluster from its first unknown letter on.
            unknown = arg[1:].lstrip("uvte")
            err(ctx, f"Unknown option '{unknown}' (see \"cat --help\")")
            return 1
    status = 0
    for _name, source in read_inputs(ctx, operands):
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
    opts, operands = split_opts(ctx.argv[1:], "laAd1RhtrsSFnZ")
    long = "l" in opts or "n" in opts
    status = 0
    targets = operands or ["."]
    files: list[tuple[str, StatResult]] = []
    dirs: list[str] = []
    for target, info in stat_each(ctx, targets, follow=True):
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
            err(ctx, f"{directory}: {exc}")
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
    opts, operands = split_opts(ctx.argv[1:], "rRfvd")
    recursive = "r" in opts or "R" in opts
    force = "f" in opts
    status = 0
    if not operands and not force:
        err(ctx, "Needs 1 argument")
        return 1
    for target in operands:
        try:
            ctx.fs.remove(target, ctx.cwd, recursive=recursive, dir_ok="d" in opts)
        except FsError as exc:
            if force and str(exc) == "No such file or directory":
                continue
            message = str(exc)
            if message == "Is a directory":
                err(ctx, f"{target}: Is a directory")
            else:
                err(ctx, f"{target}: {message}")
            status = 1
    return status


def cmd_rmdir(ctx: CommandContext) -> int:
    def remove(target: str) -> None:
        if not ctx.fs.is_dir(target, ctx.cwd):
            missing = not ctx.fs.exists(target, ctx.cwd)
            raise FsError(target, "No such file or directory" if missing else "Not a directory")
        ctx.fs.remove(target, ctx.cwd, recursive=False, dir_ok=True)

    return each(ctx, [a for a in ctx.argv[1:] if not a.startswith("-")], remove)


def cmd_mkdir(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    mode = 0o771
    if "-m" in args:
        index = args.index("-m")
        try:
            mode = int(args[index + 1], 8)
        except (IndexError, ValueError):
            err(ctx, "bad mode")
            return 1
        args = args[:index] + args[index + 2 :]
    opts, operands = split_opts(args, "pv")
    if not operands:
        err(ctx, "Needs 1 argument")
        return 1
    return each(
        ctx, operands, lambda t: ctx.fs.mkdir(t, ctx.cwd, parents="p" in opts, mode=mode), True
    )


def cmd_touch(ctx: CommandContext) -> int:
    _opts, operands = split_opts(ctx.argv[1:], "acm")
    return each(ctx, operands, lambda target: ctx.fs.touch(target, ctx.cwd), quote=True)


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
    operands = at_least(ctx, 2, "Rfv")
    if operands is None:
        return 1
    spec, targets = operands[0], operands[1:]
    if _parse_chmod(spec, 0) is None:
        err(ctx, f"bad mode '{spec}'")
        return 1

    def change(target: str) -> None:
        mode = _parse_chmod(spec, ctx.fs.stat(target, ctx.cwd).mode)
        assert mode is not None  # a spec that parses parses against any old mode
        ctx.fs.chmod(target, mode, ctx.cwd)

    return each(ctx, targets, change)


def cmd_cp(ctx: CommandContext) -> int:
    operands = at_least(ctx, 2, "rRfpaiv")
    if operands is None:
        return 1
    *sources, dest = operands

    def copy(source: str) -> None:
        target = dest
        if ctx.fs.is_dir(dest, ctx.cwd):
            target = posixpath.join(dest, posixpath.basename(source))
        info = ctx.fs.stat(source, ctx.cwd)
        ctx.fs.write(target, ctx.fs.read(source, ctx.cwd), ctx.cwd, mode=info.mode & 0o7777)

    return each(ctx, sources, copy)


def cmd_mv(ctx: CommandContext) -> int:
    operands = at_least(ctx, 2, "fivn")
    if operands is None:
        return 1
    *sources, dest = operands
    return each(ctx, sources, lambda source: ctx.fs.rename(source, dest, ctx.cwd))


def hash_command(algorithm: str) -> Handler:
    def handler(ctx: CommandContext) -> int:
        _opts, operands = split_opts(ctx.argv[1:], "bc")
        status = 0
        for name, source in read_inputs(ctx, operands):
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
        err(ctx, "Needs 1 argument")
        return 1
    status = 0
    for name, info in stat_each(ctx, operands, follow):
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
            err(ctx, "missing ]")
            return 2
        args = args[:-1]
    try:
        return 0 if _test_expr(ctx, args) else 1
    except ValueError as exc:
        err(ctx, str(exc))
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
