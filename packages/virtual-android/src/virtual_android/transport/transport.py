"""The device side of ADB transports over TCP: one connection is one transport.

A transport answers CNXN (again, whenever the adb server sends one), multiplexes
streams opened with OPEN, and keeps the flow control rule of the protocol: at most
one WRTE outstanding per stream until the peer's OKAY. Incoming data is
acknowledged only when the service consumes it, so a slow service slows the host.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Final

from ..errors import VirtualAndroidError
from .protocol import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_STLS,
    A_VERSION,
    A_VERSION_MIN,
    A_VERSION_SKIP_CHECKSUM,
    A_WRTE,
    HEADER_SIZE,
    MAX_CONNECT_PAYLOAD,
    MAX_PAYLOAD,
    Message,
    ProtocolError,
    decode_header,
)

log = logging.getLogger(__name__)

_POLL: Final = 0.05


class StreamClosed(VirtualAndroidError):
    """The stream was closed by the peer, by the device, or with its transport."""


class HungGate:
    """While set, transports hold every outgoing message and start no service."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._hung = False

    @property
    def hung(self) -> bool:
        with self._cond:
            return self._hung

    def set(self, hung: bool) -> None:
        with self._cond:
            self._hung = hung
            self._cond.notify_all()

    def wait_clear(self, stop: threading.Event) -> bool:
        """Block while hung; False when `stop` was set meanwhile."""
        with self._cond:
            while self._hung and not stop.is_set():
                self._cond.wait(_POLL)
        return not stop.is_set()


class Stream:
    """One multiplexed stream: a service on the device talking to a host socket."""

    def __init__(self, transport: Transport, local_id: int, remote_id: int, service: str) -> None:
        self.transport = transport
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._inbound: collections.deque[bytes] = collections.deque()
        self._can_write = True
        self._accepted = False
        self._sent_close = False
        self._opened = threading.Event()  # a device-opened stream: the peer's OKAY came

    # -- lifecycle -------------------------------------------------------------
    def accept(self) -> None:
        """Answer the OPEN with OKAY: the service exists."""
        with self._cond:
            if self._accepted or self.closed.is_set():
                return
            self._accepted = True
        self.transport.send(Message(A_OKAY, self.local_id, self.remote_id))

    def refuse(self) -> None:
        """Answer the OPEN with CLSE(0, remote): no such service."""
        with self._cond:
            if self._sent_close:
                return
            self._sent_close = True
        self.transport.send(Message(A_CLSE, 0, self.remote_id))
        self._mark_closed()

    def close(self) -> None:
        """Close from the device side (sends CLSE once, unless the peer closed first)."""
        with self._cond:
            already = self._sent_close or self.closed.is_set()
            self._sent_close = True
        if not already:
            if self._accepted:
                self.transport.send(Message(A_CLSE, self.local_id, self.remote_id))
            else:
                self.transport.send(Message(A_CLSE, 0, self.remote_id))
        self._mark_closed()

    def _mark_closed(self) -> None:
        with self._cond:
            self.closed.set()
            self._cond.notify_all()
        self.transport.forget(self)

    # -- data ------------------------------------------------------------------
    @property
    def max_payload(self) -> int:
        return self.transport.max_payload

    def write(self, data: bytes) -> None:
        """Send data as WRTE messages, each waiting for the previous one's OKAY."""
        view = memoryview(data)
        step = self.transport.max_payload
        for start in range(0, len(view), step):
            chunk = bytes(view[start : start + step])
            with self._cond:
                while not self._can_write and not self.closed.is_set():
                    self._cond.wait(_POLL)
                if self.closed.is_set():
                    raise StreamClosed(self.service)
                self._can_write = False
            self.transport.send(Message(A_WRTE, self.local_id, self.remote_id, chunk))

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the last WRTE was acknowledged (or the stream closed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._can_write or self.closed.is_set(), timeout)

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next chunk the host wrote; b"" once closed; None on timeout.

        Taking a chunk acknowledges it (OKAY), which lets the host send the next one.
        """
        with self._cond:
            ok = self._cond.wait_for(lambda: bool(self._inbound) or self.closed.is_set(), timeout)
            if not ok:
                return None
            if not self._inbound:
                return b""
            chunk = self._inbound.popleft()
            closed = self.closed.is_set()
        if not closed:
            self.transport.send(Message(A_OKAY, self.local_id, self.remote_id))
        return chunk

    def wait_opened(self, timeout: float) -> bool:
        """For a stream the device opened: wait for the peer's OKAY (False: refused or late)."""
        self._opened.wait(timeout)
        return self._opened.is_set() and not self.closed.is_set()

    # -- called by the transport reader -----------------------------------------
    def _on_okay(self, remote_id: int) -> None:
        with self._cond:
            if self.remote_id == 0:  # the answer to our own OPEN
                self.remote_id = remote_id
                self._accepted = True
                self._opened.set()
            else:
                self._can_write = True
            self._cond.notify_all()

    def _on_write(self, data: bytes) -> None:
        with self._cond:
            self._inbound.append(data)
            self._cond.notify_all()

    def _on_peer_close(self) -> None:
        with self._cond:
            self._sent_close = True
        self._mark_closed()
        self._opened.set()


ServiceOpener = Callable[[Stream], None]


class Transport:
    """One TCP connection from the adb server."""

    def __init__(
        self,
        sock: socket.socket,
        banner: bytes,
        opener: ServiceOpener,
        gate: HungGate,
        on_closed: Callable[[Transport], None],
    ) -> None:
        self.sock = sock
        self.banner = banner
        self.opener = opener
        self.gate = gate
        self.on_closed = on_closed
        self.version = A_VERSION
        self.ordinal = 0  # adbd names a TCP transport host-N after its socket's fd
        self.max_payload = MAX_CONNECT_PAYLOAD
        self.connected = False
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._next_id = 1
        self._outgoing: queue.Queue[Message | None] = queue.Queue()
        self._opens: queue.Queue[Message | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        try:
            host, port = sock.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"

    def start(self) -> None:
        for target, name in (
            (self._read_loop, "reader"),
            (self._write_loop, "writer"),
            (self._open_loop, "opener"),
        ):
            thread = threading.Thread(target=target, name=f"adb-{name}-{self.peer}", daemon=True)
            self._threads.append(thread)
            thread.start()

    # -- sending ---------------------------------------------------------------
    def send(self, message: Message) -> None:
        if not self.stopped.is_set():
            self._outgoing.put(message)

    def _write_loop(self) -> None:
        try:
            while True:
                message = self._outgoing.get()
                if message is None or self.stopped.is_set():
                    return
                if not self.gate.wait_clear(self.stopped):
                    return
                with_check = self.version < A_VERSION_SKIP_CHECKSUM
                log.debug("%s <- %r", self.peer, message)
                self.sock.sendall(message.encode(with_checksum=with_check))
        except OSError as exc:
            log.debug("%s write failed: %s", self.peer, exc)
        finally:
            self.close()

    # -- receiving -------------------------------------------------------------
    def _recv_exact(self, size: int) -> bytes | None:
        parts: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self.sock.recv(min(remaining, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def _read_loop(self) -> None:
        try:
            while not self.stopped.is_set():
                raw = self._recv_exact(HEADER_SIZE)
                if raw is None:
                    return
                header = decode_header(raw, MAX_PAYLOAD)
                data = self._recv_exact(header.data_length) if header.data_length else b""
                if data is None:
                    return
                message = Message(header.command, header.arg0, header.arg1, data)
                log.debug("%s -> %r", self.peer, message)
                self._dispatch(message)
        except (OSError, ProtocolError) as exc:
            if not (isinstance(exc, OSError) and exc.errno in (errno.EBADF, None)):
                log.debug("%s read ended: %s", self.peer, exc)
        finally:
            self.close()

    def _dispatch(self, message: Message) -> None:
        cmd = message.command
        if cmd == A_CNXN:
            self._on_connect(message)
            return
        if cmd in (A_AUTH, A_STLS):
            return  # we never ask for AUTH; the host only answers it
        if not self.connected:
            return
        if cmd == A_OPEN:
            self._opens.put(message)
        elif cmd == A_OKAY:
            stream = self._find(message.arg1)
            if stream is not None:
                stream._on_okay(message.arg0)
        elif cmd == A_WRTE:
            stream = self._find(message.arg1)
            if stream is not None:
                stream._on_write(message.data)
        elif cmd == A_CLSE:
            stream = self._find(message.arg1)
            if stream is not None:
                stream._on_peer_close()

    def _on_connect(self, message: Message) -> None:
        version = max(A_VERSION_MIN, min(message.arg0, A_VERSION))
        self.version = version
        self.max_payload = max(
            MAX_CONNECT_PAYLOAD, min(message.arg1 or MAX_CONNECT_PAYLOAD, MAX_PAYLOAD)
        )
        if self.connected:
            # The host started over on this connection: forget old streams.
            for stream in self._all_streams():
                stream._on_peer_close()
        self.connected = True
        self.send(Message(A_CNXN, version, MAX_PAYLOAD, self.banner[:MAX_CONNECT_PAYLOAD]))

    def _open_loop(self) -> None:
        while True:
            message = self._opens.get()
            if message is None or self.stopped.is_set():
                return
            if not self.gate.wait_clear(self.stopped):
                return
            service = message.data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            with self._lock:
                local_id = self._next_id
                self._next_id += 1
                stream = Stream(self, local_id, message.arg0, service)
                self._streams[local_id] = stream
            thread = threading.Thread(
                target=self._run_service, args=(stream,), name=f"svc-{service[:40]}", daemon=True
            )
            thread.start()

    def _run_service(self, stream: Stream) -> None:
        try:
            self.opener(stream)
        except StreamClosed:
            pass
        except Exception:  # a service bug must not take the transport down
            log.exception("service %r failed", stream.service)
        finally:
            stream.close()

    def open_stream(self, service: str, timeout: float = 5.0) -> Stream:
        """Open a stream to the host (as adbd does for `adb reverse`): OPEN, then the adb
        server's OKAY, or StreamClosed when it answers CLSE or not at all."""
        with self._lock:
            local_id = self._next_id
            self._next_id += 1
            stream = Stream(self, local_id, 0, service)
            self._streams[local_id] = stream
        self.send(Message(A_OPEN, local_id, 0, service.encode() + b"\0"))
        if not stream.wait_opened(timeout):
            stream._on_peer_close()
            raise StreamClosed(service)
        return stream

    # -- streams ---------------------------------------------------------------
    def _find(self, local_id: int) -> Stream | None:
        with self._lock:
            return self._streams.get(local_id)

    def _all_streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams.values())

    def forget(self, stream: Stream) -> None:
        with self._lock:
            if self._streams.get(stream.local_id) is stream:
                del self._streams[stream.local_id]

    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    # -- teardown --------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self.stopped.is_set():
                return
            self.stopped.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._outgoing.put(None)
        self._opens.put(None)
        for stream in self._all_streams():
            stream._on_peer_close()
        self.on_closed(self)


class TransportServer:
    """The loopback listener; each accepted connection becomes a Transport."""

    def __init__(
        self,
        banner: bytes,
        opener: ServiceOpener,
        on_transport_closed: Callable[[Transport], None] | None = None,
    ) -> None:
        self.banner = banner
        self.opener = opener
        self._on_transport_closed = on_transport_closed
        self.gate = HungGate()
        self._lock = threading.Lock()
        self._transports: set[Transport] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._offline = False
        self._accepted = 0

    def bind(self, host: str, port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(16)
            sock.settimeout(_POLL * 4)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        bound: int = sock.getsockname()[1]
        return bound

    def start(self) -> None:
        if self._listener is None:
            raise RuntimeError("bind() first")
        self._thread = threading.Thread(target=self._accept_loop, name="adb-listener", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopped.is_set():
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            conn.settimeout(None)
            with self._lock:
                refuse = self._offline or self._stopped.is_set()
            if refuse:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = Transport(conn, self.banner, self.opener, self.gate, self._on_closed)
            with self._lock:
                self._accepted += 1
                transport.ordinal = 18 + self._accepted
                self._transports.add(transport)
            transport.start()

    def _on_closed(self, transport: Transport) -> None:
        with self._lock:
            self._transports.discard(transport)
        if self._on_transport_closed is not None:
            self._on_transport_closed(transport)

    def transports(self) -> list[Transport]:
        with self._lock:
            return list(self._transports)

    def cut(self) -> None:
        """Drop every transport at once; the listener stays."""
        for transport in self.transports():
            transport.close()

    def set_offline(self, offline: bool) -> None:
        with self._lock:
            self._offline = offline
        if offline:
            self.cut()

    def stop(self) -> None:
        self._stopped.set()
        self.gate.set(False)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
            with contextlib.suppress(OSError):
                self._listener.close()
        self.cut()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
