"""Run one virtual Galaxy S24 in the foreground: python -m devicelab_virtual --port N."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .launch import make_virtual_s24, shutdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicelab_virtual", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port (0 = any free port outside 5555-5585)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log protocol traffic")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    device = make_virtual_s24(port=args.port)
    device.start()
    print(device.serial, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        shutdown(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
