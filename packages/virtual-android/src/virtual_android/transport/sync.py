"""The sync v1 service (adb push/pull/stat/ls) over one stream."""

from __future__ import annotations

import stat
import struct
import time
from typing import TYPE_CHECKING

from ..fs.filesystem import FsError
from .transport import Stream

if TYPE_CHECKING:
    from ..fs.filesystem import VirtualFS

SYNC_DATA_MAX = 64 * 1024
_ID = struct.Struct("<4sI")
_STAT = struct.Struct("<4sIII")
_DENT = struct.Struct("<4sIIII")
# A path longer than this is a protocol error in adbd too.
_MAX_PATH = 1024


class _Reader:
    """Reads exact byte counts from a stream's chunks."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def read_exact(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            chunk = self._stream.read()
            if not chunk:
                return None
            self._buffer.extend(chunk)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class _Writer:
    """Coalesces small sync replies into WRTEs of at most maxdata bytes."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def put(self, data: bytes) -> None:
        self._buffer.extend(data)
        if len(self._buffer) >= self._stream.max_payload:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._stream.write(data)

    def fail(self, message: str) -> None:
        raw = message.encode("utf-8", "replace")
        self.put(_ID.pack(b"FAIL", len(raw)) + raw)
        self.flush()


def serve_sync(fs: VirtualFS, stream: Stream) -> None:
    """Serve sync requests until QUIT or the stream closes."""
    stream.accept()
    reader = _Reader(stream)
    writer = _Writer(stream)
    while True:
        header = reader.read_exact(8)
        if header is None:
            return
        ident, length = _ID.unpack(header)
        if ident == b"QUIT":
            writer.flush()
            return
        if length > _MAX_PATH:
            writer.fail("path too long")
            return
        raw_path = reader.read_exact(length) if length else b""
        if raw_path is None:
            return
        path = raw_path.decode("utf-8", "surrogateescape")
        if ident == b"STAT":
            _do_stat(fs, path, writer)
        elif ident == b"LIST":
            _do_list(fs, path, writer)
        elif ident == b"RECV":
            _do_recv(fs, path, writer)
        elif ident == b"SEND":
            if not _do_send(fs, path, reader, writer):
                return
        else:
            writer.fail(f"unknown sync command {ident!r}")
            return
        writer.flush()


def _do_stat(fs: VirtualFS, path: str, writer: _Writer) -> None:
    try:
        # adbd answers STAT v1 with lstat(), except that a trailing slash follows links.
        info = fs.stat(path, follow=path.endswith("/"))
        writer.put(_STAT.pack(b"STAT", info.mode, info.size & 0xFFFFFFFF, info.mtime))
    except FsError:
        writer.put(_STAT.pack(b"STAT", 0, 0, 0))


def _do_list(fs: VirtualFS, path: str, writer: _Writer) -> None:
    try:
        names = fs.listdir(path)
        base = fs.resolve(path)
        entries = [(".", fs.stat(base)), ("..", fs.stat(base.rsplit("/", 1)[0] or "/"))]
        for name in names:
            try:
                entries.append((name, fs.stat(base.rstrip("/") + "/" + name, follow=False)))
            except FsError:
                continue
    except FsError:
        entries = []
    for name, info in entries:
        raw = name.encode("utf-8", "surrogateescape")
        writer.put(
            _DENT.pack(b"DENT", info.mode, info.size & 0xFFFFFFFF, info.mtime, len(raw)) + raw
        )
    writer.put(_DENT.pack(b"DONE", 0, 0, 0, 0))


def _do_recv(fs: VirtualFS, path: str, writer: _Writer) -> None:
    try:
        info = fs.stat(path)
        if info.is_dir:
            raise FsError(path, "Is a directory")
        data = fs.read(path)
    except FsError as exc:
        writer.fail(f"open failed: {exc}")
        return
    view = memoryview(data)
    for start in range(0, len(view), SYNC_DATA_MAX):
        chunk = view[start : start + SYNC_DATA_MAX]
        writer.put(_ID.pack(b"DATA", len(chunk)) + bytes(chunk))
    writer.put(_ID.pack(b"DONE", 0))


def _do_send(fs: VirtualFS, spec: str, reader: _Reader, writer: _Writer) -> bool:
    path, comma, mode_text = spec.rpartition(",")
    if not comma:
        path, mode_text = spec, str(stat.S_IFREG | 0o644)
    try:
        mode = int(mode_text)
    except ValueError:
        mode = stat.S_IFREG | 0o644
    buffer = bytearray()
    mtime = int(time.time())
    while True:
        header = reader.read_exact(8)
        if header is None:
            return False
        ident, length = _ID.unpack(header)
        if ident == b"DATA":
            if length > SYNC_DATA_MAX:
                writer.fail("data chunk too large")
                return False
            chunk = reader.read_exact(length)
            if chunk is None:
                return False
            buffer.extend(chunk)
        elif ident == b"DONE":
            mtime = length
            break
        else:
            writer.fail(f"invalid data message {ident!r}")
            return False
    try:
        if fs.is_dir(path):
            raise FsError(path, "Is a directory")
        if stat.S_ISLNK(mode):
            target = buffer.decode("utf-8", "surrogateescape").rstrip("\0")
            resolved = fs.resolve(path, follow=False)
            if not fs.writable(resolved):
                raise FsError(path, "Permission denied")
            fs.add_link(resolved, target)
        else:
            perm = stat.S_IMODE(mode) or 0o644
            fs.write(path, bytes(buffer), mode=perm, mtime=mtime, make_parents=True)
    except FsError as exc:
        writer.fail(f"couldn't create file: {exc}")
        return True
    writer.put(_ID.pack(b"OKAY", 0))
    return True
