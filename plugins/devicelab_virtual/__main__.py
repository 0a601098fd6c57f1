"""Run one virtual Galaxy S24 in the foreground: python -m devicelab_virtual --port N.

The phone is virtual-android's; its models run on devicelab's llama.cpp engine.
"""

from __future__ import annotations

import argparse
import sys

from virtual_android import serve
from virtual_android.cli import add_serve_flags, log_to_stderr

import devicelab

from .backend import engine_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicelab_virtual", description=__doc__)
    add_serve_flags(parser)
    args = parser.parse_args(argv)
    log_to_stderr(args.verbose)
    backend = engine_backend(devicelab.load_plugins())
    return serve(
        args.port, backend=backend, host_binaries=args.allow_binary, allow_exec=args.allow_exec
    )


if __name__ == "__main__":
    sys.exit(main())
