"""A Ctrl-C the run cannot lose.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be, and some
places drop it: a ctypes callback (llama.cpp's log callback during a model load) prints it
and carries on, a library may catch it and raise its own error, an engine may treat the
broken call as a lost device and retry. So while the trials run, SIGINT also sets a flag, and
the scheduler checks it between attempts and between trials: a dropped Ctrl-C still stops the
run at the next boundary, and the attempt it landed in is not kept (its trial runs again on
``--resume``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_pressed = threading.Event()


@contextmanager
def watching() -> Iterator[None]:
    """While the block runs, remember every Ctrl-C (and raise KeyboardInterrupt as usual).

    Only in the main thread (the only one signals reach) and only over Python's default
    handler: a program that installed its own SIGINT handler keeps it.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        _pressed.set()
        raise KeyboardInterrupt

    _pressed.clear()
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pressed.clear()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed while the trials ran, even if whatever
    it landed in swallowed it."""
    if _pressed.is_set():
        raise KeyboardInterrupt
