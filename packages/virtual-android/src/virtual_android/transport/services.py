"""Device services behind OPEN: shell (v1 and v2), exec, sync and tcp forwarding."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

from ..shell.interpreter import DEFAULT_ENV, IO, Interpreter, ShellState
from ..shell.shellio import BrokenPipe, CallbackOutput, CancelToken, Pipe, ShellCancelled
from .sync import serve_sync
from .transport import Stream, StreamClosed

if TYPE_CHECKING:
    from ..device import VirtualS24

log = logging.getLogger(__name__)

# shell protocol packet ids
ID_STDIN = 0
ID_STDOUT = 1
ID_STDERR = 2
ID_EXIT = 3
ID_CLOSE_STDIN = 4
ID_WINDOW_SIZE = 5
_PACKET = struct.Struct("<BI")
# adbd keeps shell packets well below maxdata; so do we.
SHELL_PACKET_MAX = 32 * 1024 - _PACKET.size
# How long a raw session whose client closed may go without reading its remaining input.
_HANGUP_GRACE = 0.5
_POLL = 0.02


def open_service(device: VirtualS24, stream: Stream) -> None:
    """Dispatch an OPEN by its service string (runs in the stream's own thread)."""
    service = stream.service
    name, colon, rest = service.partition(":")
    if not colon:
        stream.refuse()
        return
    head = name.split(",")
    if head[0] == "shell":
        options = head[1:]
        ShellSession(device, stream, rest, v2="v2" in options, pty=_wants_pty(options, rest)).run()
    elif name == "exec":
        ShellSession(device, stream, rest, v2=False, pty=False).run()
    elif name == "sync":
        serve_sync(device.fs, stream)
    elif name == "tcp":
        serve_tcp(device, stream, rest)
    elif name in ("root", "unroot"):
        stream.accept()
        stream.write(b"adbd cannot run as root in production builds\n")
    elif name == "reboot":
        stream.accept()
        stream.wait_drained(1.0)
        device.reboot()
    elif name == "reverse":
        serve_reverse(device, stream, rest)
    elif name == "framebuffer":
        serve_framebuffer(device, stream)
    else:
        stream.refuse()


def _wants_pty(options: list[str], command: str) -> bool:
    if "raw" in options:
        return False
    if "pty" in options:
        return True
    return command == ""  # legacy default: a pty for interactive shells only


class ShellSession:
    """One `sh -c CMD` (or interactive sh) bound to a stream."""

    def __init__(
        self, device: VirtualS24, stream: Stream, command: str, v2: bool, pty: bool
    ) -> None:
        self.device = device
        self.stream = stream
        self.command = command
        self.v2 = v2
        self.pty = pty
        self.token = CancelToken()
        self.stdin = Pipe(self.token)
        self._write_lock = threading.Lock()

    # -- output ----------------------------------------------------------------
    def _send(self, packet_id: int, data: bytes) -> None:
        if self.pty:
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self.v2:
            parts = []
            for start in range(0, len(data), SHELL_PACKET_MAX):
                chunk = data[start : start + SHELL_PACKET_MAX]
                parts.append(_PACKET.pack(packet_id, len(chunk)) + chunk)
            data = b"".join(parts)
        try:
            with self._write_lock:
                self.stream.write(data)
        except StreamClosed:
            self.token.set()
            raise ShellCancelled() from None

    def _stdout(self, data: bytes) -> None:
        self._send(ID_STDOUT, data)

    def _stderr(self, data: bytes) -> None:
        self._send(ID_STDOUT if self.pty else ID_STDERR, data)

    # -- input -----------------------------------------------------------------
    def _pump_stdin(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self.stream.read()
                if not chunk:
                    return
                if not self.v2:
                    self._feed(chunk)
                    continue
                buffer.extend(chunk)
                while len(buffer) >= _PACKET.size:
                    packet_id, length = _PACKET.unpack_from(buffer)
                    if len(buffer) < _PACKET.size + length:
                        break
                    payload = bytes(buffer[_PACKET.size : _PACKET.size + length])
                    del buffer[: _PACKET.size + length]
                    if packet_id == ID_STDIN:
                        self._feed(payload)
                    elif packet_id == ID_CLOSE_STDIN:
                        self.stdin.close_write()
        except ShellCancelled:
            pass
        finally:
            self.stdin.close_write()
            self._hang_up()

    def _hang_up(self) -> None:
        """The client closed the stream: the session (and its loops) must stop.

        Shell v2 clients half-close with CLOSE_STDIN, so a close is a hang-up (adbd sends
        SIGHUP). Raw `exec:`/`shell:` clients have no half-close: `adb exec-in 'cat > f'`
        sends its data and closes. As on a phone, what was sent before the close is still
        read (stdin ends after it), and the command stops once it has read to the end of
        its input, writes to the closed stream, or stops reading for a moment.
        """
        if self.v2 or self.token.is_set():
            self.token.set()
            return
        deadline = time.monotonic() + _HANGUP_GRACE
        while not self.token.is_set():
            if self.stdin.drained or time.monotonic() > deadline:
                break
            if self.stdin.reads_since_last_check():
                deadline = time.monotonic() + _HANGUP_GRACE
            time.sleep(_POLL)
        self.token.set()

    def _feed(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipe):
            self.stdin.put(data)

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> None:
        self.stream.accept()
        pid = self.device.register_session(self.command, self.token)
        env = dict(DEFAULT_ENV)
        state = ShellState(vars=env, exported=set(env), cwd="/", pid=pid)
        interpreter = Interpreter(self.device, self.token, state)
        out = CallbackOutput(self._stdout, self.token)
        err = CallbackOutput(self._stderr, self.token)
        io = IO(self.stdin.reader, out, err)
        pump = threading.Thread(target=self._pump_stdin, name="sh-stdin", daemon=True)
        pump.start()
        status: int | None = None
        try:
            if self.command.strip():
                status = interpreter.run(self.command, io)
            else:
                status = interpreter.interactive(io, prompt=self.pty)
        except (ShellCancelled, BrokenPipe):
            status = None
        finally:
            self.device.unregister_process(pid)
        try:
            if self.v2 and status is not None and not self.token.is_set():
                self._send(ID_EXIT, bytes([status & 0xFF]))
        except ShellCancelled:
            pass
        finally:
            self.token.set()
            self.stream.close()


def serve_tcp(device: VirtualS24, stream: Stream, address: str) -> None:
    """Bridge the device's tcp:PORT to the host port it is exposed on."""
    port_text = address.rsplit(":", 1)[-1]
    host_port = device.exposed_port(int(port_text)) if port_text.isdigit() else None
    if host_port is None:
        stream.refuse()
        return
    try:
        sock = socket.create_connection(("127.0.0.1", host_port), timeout=2.0)
    except OSError:
        stream.refuse()
        return
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream.accept()

    def host_to_device() -> None:
        try:
            while True:
                data = sock.recv(stream.max_payload)
                if not data:
                    break
                stream.write(data)
        except (OSError, StreamClosed):
            pass
        finally:
            stream.close()

    pump = threading.Thread(target=host_to_device, name=f"tcp-{port_text}", daemon=True)
    pump.start()
    try:
        while True:
            data = stream.read()
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        stream.close()
        pump.join(timeout=2)


def _okay() -> bytes:
    return b"OKAY"


def _string(payload: str) -> bytes:
    data = payload.encode()
    return f"{len(data):04x}".encode() + data


def _fail(message: str) -> bytes:
    data = message.encode()
    return b"FAIL" + f"{len(data):04x}".encode() + data


_SPECS = ("tcp:", "localabstract:", "localreserved:", "localfilesystem:")


def serve_reverse(device: VirtualS24, stream: Stream, command: str) -> None:
    """`reverse:` (adb reverse): the device's listeners for host sockets, answered as adbd
    answers them (OKAY, or FAIL with a message; list-forward's lines read
    `host-N DEVICE-SPEC HOST-SPEC`)."""
    stream.accept()
    transport = stream.transport
    if command == "list-forward":
        serial = f"host-{transport.ordinal}"
        lines = "".join(f"{serial} {d} {h}\n" for d, h in device.reverse_list(transport))
        stream.write(_string(lines))  # adbd sends no OKAY before this one
    elif command == "killforward-all":
        device.remove_reverse(transport)
        stream.write(_okay())
    elif command.startswith("killforward:"):
        spec = command[len("killforward:") :]
        if device.remove_reverse(transport, spec):
            stream.write(_okay())
        else:
            stream.write(_fail(f"listener '{spec}' not found"))
    elif command.startswith("forward:"):
        rest = command[len("forward:") :]
        rebind = not rest.startswith("norebind:")
        if not rebind:
            rest = rest[len("norebind:") :]
        device_spec, _, host_spec = rest.partition(";")
        if not (device_spec.startswith(_SPECS) and host_spec.startswith(_SPECS)):
            stream.write(_fail("cannot bind listener: bad specification"))
        elif device_spec == "tcp:0":
            stream.write(_fail("cannot bind listener: port 0 is not supported"))
        elif not device.add_reverse(transport, device_spec, host_spec, rebind):
            stream.write(_fail("cannot rebind existing socket"))
        else:
            stream.write(_okay())
    else:
        stream.write(_fail(f"unsupported reverse command: {command}"))
    stream.wait_drained(2.0)


def serve_framebuffer(device: VirtualS24, stream: Stream) -> None:
    """`framebuffer:`: the fbinfo header, then the pixels of the current screen."""
    frame = device.capture_screen()
    stream.accept()
    stream.write(frame.framebuffer())
    stream.wait_drained(5.0)
