"""`pm` and `cmd package`: the package manager's shell command (Android's
PackageManagerShellCommand), over system/packages.py's PackageManager."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..fs.filesystem import FsError
from .packages import InstallError, Package, PackageManager, dump_package, int_or

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["package_commands"]


_PM_HELP = """Package manager (package) commands:
  help
    Print this help text.

  path [--user USER_ID] PACKAGE
    Print the path to the .apk of the given PACKAGE.

  dump PACKAGE
    Print various system state associated with the given PACKAGE.

  list packages [-f] [-d] [-e] [-s] [-3] [-i] [-l] [-u] [-U]
      [--show-versioncode] [--apex-only] [--uid UID] [--user USER_ID] [FILTER]
    Prints all packages; optionally only those whose name contains
    the text in FILTER.

  install [-rtfdgw] [-i PACKAGE] [--user USER_ID|all|current]
       [-S BYTES] [PATH [SPLIT...]|-]
    Install an application.  Must provide the apk data to install, either as
    file path(s) or '-' to read from stdin.

  uninstall [-k] [--user USER_ID] [--versionCode VERSION_CODE]
       PACKAGE [SPLIT...]
    Remove the given package name from the system.

  clear [--user USER_ID] [--cache-only] PACKAGE
    Deletes data associated with a package.
"""

_VALUE_FLAGS = {"--user", "-i", "--uid", "-S", "--versionCode", "--install-reason", "-p"}


def _split(args: list[str]) -> tuple[set[str], dict[str, str], list[str]]:
    flags: set[str] = set()
    values: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _VALUE_FLAGS and i + 1 < len(args):
            values[arg] = args[i + 1]
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            if arg.startswith("--"):
                flags.add(arg)
            else:
                flags.update(f"-{c}" for c in arg[1:])
        else:
            words.append(arg)
        i += 1
    return flags, values, words


def _pm(ctx: CommandContext, manager: PackageManager, args: list[str]) -> int:
    if not args or args[0] in ("help", "-h"):
        ctx.write(_PM_HELP)
        return 0
    verb, rest = args[0], args[1:]
    flags, values, words = _split(rest)
    if verb == "list" and words[:1] in (["packages"], ["package"]):
        return _list_packages(ctx, manager, flags, words[1:])
    if verb == "path":
        package = manager.get(words[-1]) if words else None
        if package is None:
            return 1
        ctx.write(f"package:{package.apk_path}\n")
        return 0
    if verb == "install":
        return _install(ctx, manager, flags, values, words)
    if verb.startswith("install-"):
        return _session(ctx, manager, verb, flags, values, words)
    if verb == "uninstall":
        if not words:
            ctx.error("Error: package name not specified\n")
            return 1
        if manager.uninstall(words[0]):
            ctx.write("Success\n")
            return 0
        ctx.write("Failure [DELETE_FAILED_INTERNAL_ERROR]\n")
        return 1
    if verb == "clear":
        if words and manager.clear_data(words[-1]):
            ctx.write("Success\n")
            return 0
        ctx.write("Failed\n")
        return 1
    if verb == "dump":
        if not words:
            ctx.error("Error: no package specified\n")
            return 1
        dump_package(ctx, manager, words[-1])
        return 0
    if verb in (
        "grant",
        "revoke",
        "enable",
        "disable",
        "disable-user",
        "set-app-links",
        "reset-permissions",
        "trim-caches",
        "compile",
    ):
        return 0
    ctx.error(f"Unknown command: {verb}\n")
    return 255


def _list_packages(
    ctx: CommandContext, manager: PackageManager, flags: set[str], words: list[str]
) -> int:
    out: list[str] = []
    for package in manager.all():
        if "-3" in flags and package.system:
            continue
        if "-s" in flags and not package.system:
            continue
        if words and words[0] not in package.name:
            continue
        line = "package:"
        if "-f" in flags:
            line += f"{package.apk_path}="
        line += package.name
        if "--show-versioncode" in flags:
            line += f" versionCode:{package.version_code}"
        if "-i" in flags:
            line += "  installer=null"
        if "-U" in flags:
            line += f" uid:{package.app_id}"
        out.append(line)
    ctx.write("".join(f"{line}\n" for line in out))
    return 0


def _install(
    ctx: CommandContext,
    manager: PackageManager,
    flags: set[str],
    values: dict[str, str],
    words: list[str],
) -> int:
    if words and words[0] != "-":
        path = ctx.path(words[0])
        try:
            data = ctx.fs.read(path)
        except FsError:
            ctx.error(
                f"Error: Unable to open file: {words[0]}\n"
                "Consider using a file under /data/local/tmp/\n"
                f"Error: Can't open file: {words[0]}\n"
            )
            return 1
    elif "-S" in values:
        size = int_or(values["-S"], -1)
        if size < 0:
            ctx.error(f"Error: invalid size: {values['-S']}\n")
            return 1
        data = ctx.stdin.read(size)
        if len(data) < size:
            ctx.write("Failure [INSTALL_FAILED_INTERNAL_ERROR: Failed to write to stream]\n")
            return 1
    else:
        ctx.error("Error: must either specify a package size or an APK file\n")
        return 1
    return _report_install(ctx, lambda: manager.install(data, flags))


def _report_install(ctx: CommandContext, install: Callable[[], Package]) -> int:
    """Run an install and print what pm prints: Success, or the failure code and reason."""
    try:
        install()
    except InstallError as exc:
        ctx.write(exc.failure() + "\n")
        return 1
    ctx.write("Success\n")
    return 0


def _session(
    ctx: CommandContext,
    manager: PackageManager,
    verb: str,
    flags: set[str],
    values: dict[str, str],
    words: list[str],
) -> int:
    """install-create / install-write / install-commit / install-abandon (adb
    install-multiple's streamed path)."""
    if verb == "install-create":
        ctx.write(f"Success: created install session [{manager.create_session()}]\n")
        return 0
    session = int_or(words[0], -1) if words else -1
    if verb == "install-write":
        name = words[1] if len(words) > 1 else "base.apk"
        size = int_or(values.get("-S", ""), -1)
        if len(words) > 2 and words[2] != "-":
            try:
                data = ctx.fs.read(ctx.path(words[2]))
            except FsError:
                ctx.error(f"Error: Can't open file: {words[2]}\n")
                return 1
        elif size >= 0:
            data = ctx.stdin.read(size)
        else:
            ctx.error("Error: must specify an APK size\n")
            return 1
        if not manager.write_session(session, name, data):
            ctx.error(f"Error: Invalid session ID: {session}\n")
            return 1
        ctx.write(f"Success: streamed {len(data)} bytes\n")
        return 0
    if verb == "install-commit":
        return _report_install(ctx, lambda: manager.commit_session(session, flags))
    if verb == "install-abandon":
        if manager.abandon_session(session):
            ctx.write("Success\n")
            return 0
        ctx.error(f"Error: Invalid session ID: {session}\n")
        return 1
    ctx.error(f"Unknown command: {verb}\n")
    return 255


def package_commands(manager: PackageManager) -> dict[str, CommandHandler]:
    return {"pm": lambda ctx: _pm(ctx, manager, ctx.argv[1:])}
