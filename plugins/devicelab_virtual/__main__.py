"""Run one virtual Galaxy S24 in the foreground: python -m devicelab_virtual --port N.

The phone is virtual-android's; its models run on devicelab's llama.cpp engine.
"""

from __future__ import annotations

import argparse
import logging
import sys

from virtual_android import serve
from virtual_android.cli import add_exec_flag

import devicelab

from .backend import engine_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicelab_virtual", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port (0 = any free port outside 5555-5585)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log protocol traffic")
    parser.add_argument(
        "--allow-binary",
        action="append",
        default=[],
        metavar="PATH",
        help="a host build of llama.cpp's CLI to run as the phone's llama-cli (repeatable)",
    )
    add_exec_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    backend = engine_backend(devicelab.load_plugins())
    return serve(
        args.port, backend=backend, host_binaries=args.allow_binary, allow_exec=args.allow_exec
    )


if __name__ == "__main__":
    sys.exit(main())
