"""The ``virtual-android`` command: ``virtual-android serve --port N`` runs one phone in the
foreground, prints its serial (``127.0.0.1:PORT``) and stops it on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from .inference.backend import BackendFactory
from .phone import make_phone, shutdown_phone

__all__ = ["add_serve_flags", "log_to_stderr", "main", "serve"]


def serve(
    port: int = 0,
    *,
    backend: BackendFactory | None = None,
    print_serial: Callable[[str], None] | None = None,
    host_binaries: Sequence[str] = (),
    allow_exec: bool = False,
) -> int:
    """Run one phone until SIGINT/SIGTERM; ``print_serial`` gets its serial once it listens."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    device = make_phone(
        port=port, backend=backend, host_binaries=host_binaries, allow_exec=allow_exec
    )
    device.start()
    (print_serial or (lambda serial: print(serial, flush=True)))(device.serial)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        shutdown_phone(device)
    return 0


def parser(prog: str = "virtual-android") -> argparse.ArgumentParser:
    """``PROG serve [--port N] [--verbose] [--allow-exec] [--allow-binary PATH]...``."""
    top = argparse.ArgumentParser(prog=prog, description="A virtual Galaxy S24 over real ADB.")
    commands = top.add_subparsers(dest="command", required=True)
    add_serve_flags(commands.add_parser("serve", help=__doc__, description=__doc__))
    return top


def add_serve_flags(cmd: argparse.ArgumentParser) -> None:
    """The flags of a command that serves one phone (``serve``, and a host's own command
    that runs it on its engine): ``--port``, ``--verbose``, ``--allow-binary``,
    ``--allow-exec``; they are :func:`serve`'s arguments."""
    cmd.add_argument(
        "--port", type=int, default=0, help="loopback port (0 = any free port outside 5555-5585)"
    )
    cmd.add_argument("--verbose", "-v", action="store_true", help="log protocol traffic")
    cmd.add_argument(
        "--allow-binary",
        action="append",
        default=[],
        metavar="PATH",
        help="a host build of llama.cpp's CLI (llama-completion) to run as the phone's "
        "llama-cli when a client pushes the same file (repeatable)",
    )
    cmd.add_argument(
        "--allow-exec",
        action="store_true",
        help="run pushed arm64 programs under qemu-aarch64-static in a bubblewrap sandbox "
        "(needs qemu-user-static and bubblewrap)",
    )


def log_to_stderr(verbose: bool) -> None:
    """Warnings only, or with ``--verbose`` the protocol traffic too."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def main(argv: list[str] | None = None, *, backend: BackendFactory | None = None) -> int:
    args = parser().parse_args(argv)
    log_to_stderr(args.verbose)
    try:
        return serve(
            args.port,
            backend=backend,
            host_binaries=args.allow_binary,
            allow_exec=args.allow_exec,
        )
    except FileNotFoundError as exc:  # an --allow-binary that is not an executable file
        print(f"virtual-android: --allow-binary: {exc}.", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # a port in the emulator range, or taken
        print(f"virtual-android: {exc}. Pick another --port (0: any free one).", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
