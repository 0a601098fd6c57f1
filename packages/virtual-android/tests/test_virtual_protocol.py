"""Wire-level conformance with a minimal host: maxdata, flow control, checksums, refusals.

The adb server always negotiates 1 MiB and version 0x01000001; these tests play an older,
smaller host to check the parts of the protocol the real server never exercises.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from virtual_android.device import VirtualS24
from virtual_android.transport.protocol import (
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_WRTE,
    HEADER,
    Message,
    checksum,
)

SMALL_MAXDATA = 4096
OLD_VERSION = 0x01000000


class RawHost:
    """Just enough of the host side of the protocol to talk to the device."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        self.sock.sendall(Message(command, arg0, arg1, data).encode(with_checksum=True))

    def recv(self) -> tuple[Message, int]:
        """The next message and the data_check it carried."""
        header = self._exact(24)
        command, arg0, arg1, length, check, magic = HEADER.unpack(header)
        assert magic == command ^ 0xFFFFFFFF
        return Message(command, arg0, arg1, self._exact(length)), check

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "device closed the connection"
            data += chunk
        return data

    def connect(self, version: int = OLD_VERSION, maxdata: int = SMALL_MAXDATA) -> Message:
        self.send(A_CNXN, version, maxdata, b"host::features=shell_v2\0")
        reply, _ = self.recv()
        assert reply.command == A_CNXN
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_device() -> Iterator[tuple[VirtualS24, RawHost]]:
    with VirtualS24() as dev:
        host = RawHost(dev.port)
        try:
            yield dev, host
        finally:
            host.close()


def test_cnxn_banner_version_and_checksums(raw_device: tuple[VirtualS24, RawHost]) -> None:
    _dev, host = raw_device
    host.send(A_CNXN, OLD_VERSION, SMALL_MAXDATA, b"host::\0")
    reply, check = host.recv()
    assert reply.arg0 == OLD_VERSION  # the lower of the two versions
    assert reply.data.decode() == (
        "device::ro.product.name=e1sxxx;ro.product.model=SM-S921B;"
        "ro.product.device=e1s;features=shell_v2,cmd"
    )
    assert check == checksum(reply.data)  # old peers get a real data_check
    # A host that starts over on the same connection gets CNXN again.
    again = host.connect()
    assert again.data == reply.data


def test_checksum_is_zero_for_current_version(raw_device: tuple[VirtualS24, RawHost]) -> None:
    _dev, host = raw_device
    host.send(A_CNXN, 0x01000001, 1 << 20, b"host::\0")
    reply, check = host.recv()
    assert (reply.arg0, reply.arg1, check) == (0x01000001, 1 << 20, 0)


def test_maxdata_and_one_outstanding_write(raw_device: tuple[VirtualS24, RawHost]) -> None:
    _dev, host = raw_device
    host.connect(maxdata=SMALL_MAXDATA)
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i-with-some-padding; i=$((i+1)); done"
    host.send(A_OPEN, 7, 0, f"shell:{script}\0".encode())
    okay, _ = host.recv()
    assert okay.command == A_OKAY and okay.arg1 == 7
    device_id = okay.arg0
    received = b""
    writes = 0
    while True:
        message, _ = host.recv()
        if message.command == A_CLSE:
            break
        assert message.command == A_WRTE and (message.arg0, message.arg1) == (device_id, 7)
        assert len(message.data) <= SMALL_MAXDATA
        writes += 1
        received += message.data
        if writes == 1:
            # Until we acknowledge, the device must not send another WRTE.
            host.sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                host.sock.recv(1)
            host.sock.settimeout(5)
        host.send(A_OKAY, 7, device_id)
    lines = received.decode().splitlines()
    assert len(lines) == 400 and lines[-1] == "line-399-with-some-padding"
    assert writes > 1


def test_unknown_services_and_unexposed_ports_are_refused(
    raw_device: tuple[VirtualS24, RawHost],
) -> None:
    _dev, host = raw_device
    host.connect()
    for local_id, service in enumerate(
        ["abb_exec:package", "tcp:9008", "localabstract:x", "nonsense"], 1
    ):
        host.send(A_OPEN, local_id, 0, service.encode() + b"\0")
        reply, _ = host.recv()
        assert (reply.command, reply.arg0, reply.arg1) == (A_CLSE, 0, local_id), service


def test_host_writes_are_acknowledged_as_consumed(raw_device: tuple[VirtualS24, RawHost]) -> None:
    dev, host = raw_device
    host.connect()
    host.send(
        A_OPEN, 3, 0, b"shell,v2,raw:cat > /data/local/tmp/in.bin; wc -c /data/local/tmp/in.bin\0"
    )
    okay, _ = host.recv()
    device_id = okay.arg0
    payload = bytes(range(256)) * 40
    for start in range(0, len(payload), 2000):
        chunk = payload[start : start + 2000]
        host.send(A_WRTE, 3, device_id, struct.pack("<BI", 0, len(chunk)) + chunk)
        ack, _ = host.recv()
        assert (ack.command, ack.arg0, ack.arg1) == (A_OKAY, device_id, 3)
    host.send(A_WRTE, 3, device_id, struct.pack("<BI", 4, 0))  # close stdin
    out = b""
    while True:
        message, _ = host.recv()
        if message.command == A_CLSE:
            break
        if message.command == A_WRTE:
            out += message.data
            host.send(A_OKAY, 3, device_id)
    packets = []
    while out:
        kind, length = struct.unpack_from("<BI", out)
        packets.append((kind, out[5 : 5 + length]))
        out = out[5 + length :]
    assert (1, f"{len(payload)} /data/local/tmp/in.bin\n".encode()) in packets
    assert packets[-1] == (3, b"\0")
    assert dev.fs.read("/data/local/tmp/in.bin") == payload
