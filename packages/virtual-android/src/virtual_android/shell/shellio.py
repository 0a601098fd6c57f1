"""Byte streams, pipes and cancellation shared by the shell and emulated commands."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Final

from ..errors import VirtualAndroidError

_POLL: Final = 0.05


class ShellCancelled(VirtualAndroidError):
    """The client closed the stream (or the process was killed): stop now."""


class BrokenPipe(VirtualAndroidError):
    """The reader of a pipe went away (what SIGPIPE is to a real process)."""


class CancelToken:
    """A cancellation flag that cascades from parent to children."""

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._children: list[CancelToken] = []
        self._callbacks: list[Callable[[], None]] = []
        self._parent = parent
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: CancelToken) -> None:
        with self._lock:
            if not self._event.is_set():
                self._children.append(child)
                return
        child.set()

    def child(self) -> CancelToken:
        return CancelToken(self)

    def detach(self) -> None:
        parent = self._parent
        if parent is not None:
            with parent._lock:
                if self in parent._children:
                    parent._children.remove(self)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            children, self._children = self._children, []
            callbacks, self._callbacks = self._callbacks, []
        for child in children:
            child.set()
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once cancelled; False when `timeout` passed first."""
        return self._event.wait(timeout)

    def check(self) -> None:
        if self._event.is_set():
            raise ShellCancelled()


class Output:
    """Where a command writes: stdout, stderr, a file, a pipe, /dev/null."""

    def write(self, data: bytes | str) -> None:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        if raw:
            self.write_bytes(raw)

    def write_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Called when the writer is done (pipes signal EOF downstream)."""


class NullOutput(Output):
    def write_bytes(self, data: bytes) -> None:
        return None


class CallbackOutput(Output):
    """Hands each write to a function (an adb stream, a shell v2 packetizer...)."""

    def __init__(self, sink: Callable[[bytes], None], token: CancelToken | None = None) -> None:
        self._sink = sink
        self._token = token

    def write_bytes(self, data: bytes) -> None:
        if self._token is not None:
            self._token.check()
        self._sink(data)


class BufferOutput(Output):
    """Collects output in memory."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._lock = threading.Lock()

    def write_bytes(self, data: bytes) -> None:
        with self._lock:
            self._parts.append(data)

    def getvalue(self) -> bytes:
        with self._lock:
            return b"".join(self._parts)


class Input:
    """Where a command reads: stdin of the session, a file, a pipe, nothing."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bytes:
        """At least one byte, or b"" at end of input (override)."""
        return b""

    def has_buffered_line(self) -> bool:
        """Whether a whole line is already buffered, so readline() will not block."""
        return b"\n" in self._buffer

    def read_chunk(self) -> bytes:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if self._eof:
            return b""
        data = self._fill()
        if not data:
            self._eof = True
        return data

    def read(self, size: int = -1) -> bytes:
        """Read `size` bytes (fewer at end of input); all of it when size < 0."""
        out = bytearray()
        while size < 0 or len(out) < size:
            chunk = self.read_chunk()
            if not chunk:
                break
            if size >= 0 and len(out) + len(chunk) > size:
                keep = size - len(out)
                out.extend(chunk[:keep])
                self._buffer[:0] = chunk[keep:]
                break
            out.extend(chunk)
        return bytes(out)

    def readline(self) -> bytes:
        """One line with its newline; b"" at end of input."""
        out = bytearray()
        while True:
            chunk = self.read_chunk()
            if not chunk:
                return bytes(out)
            index = chunk.find(b"\n")
            if index >= 0:
                out.extend(chunk[: index + 1])
                self._buffer[:0] = chunk[index + 1 :]
                return bytes(out)
            out.extend(chunk)

    def lines(self) -> collections.abc.Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        """The reader is done with this input."""


class BytesInput(Input):
    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self._data: bytes | None = data

    def _fill(self) -> bytes:
        data, self._data = self._data, None
        return data or b""


class Pipe:
    """A bounded byte pipe between two threads."""

    def __init__(self, token: CancelToken | None = None, limit: int = 1 << 20) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._write_closed = False
        self._read_closed = False
        self._token = token
        self._gets = 0
        self._gets_seen = 0
        self._eof_seen = False
        self.reader = _PipeReader(self)
        self.writer = _PipeWriter(self)

    def _cancelled(self) -> bool:
        return self._token is not None and self._token.is_set()

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._size >= self._limit and not self._read_closed:
                if self._cancelled():
                    raise ShellCancelled()
                self._cond.wait(_POLL)
            if self._read_closed:
                raise BrokenPipe()
            if self._write_closed:
                return
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def get(self) -> bytes:
        with self._cond:
            self._gets += 1
            while not self._chunks and not self._write_closed:
                if self._cancelled():
                    raise ShellCancelled()
                self._cond.wait(_POLL)
            if not self._chunks:
                self._eof_seen = True
                return b""
            data = self._chunks.popleft()
            self._size -= len(data)
            self._cond.notify_all()
            return data

    @property
    def drained(self) -> bool:
        """The reader asked for more after the writer closed and everything was read."""
        with self._cond:
            return self._eof_seen or self._read_closed

    def reads_since_last_check(self) -> bool:
        """Whether the reader asked for data since the previous call."""
        with self._cond:
            seen, self._gets_seen = self._gets_seen, self._gets
            return self._gets != seen

    def close_write(self) -> None:
        with self._cond:
            self._write_closed = True
            self._cond.notify_all()

    def close_read(self) -> None:
        with self._cond:
            self._read_closed = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()


class _PipeReader(Input):
    def __init__(self, pipe: Pipe) -> None:
        super().__init__()
        self._pipe = pipe

    def _fill(self) -> bytes:
        return self._pipe.get()

    def close(self) -> None:
        self._pipe.close_read()


class _PipeWriter(Output):
    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def write_bytes(self, data: bytes) -> None:
        self._pipe.put(data)

    def close(self) -> None:
        self._pipe.close_write()
