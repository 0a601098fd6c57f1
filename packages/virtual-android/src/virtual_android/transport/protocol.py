"""ADB message framing: a 24-byte header of six little-endian uint32 and a payload."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import VirtualAndroidError

HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size  # 24


def _cmd(name: bytes) -> int:
    value: int = struct.unpack("<I", name)[0]
    return value


A_SYNC = _cmd(b"SYNC")
A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_CLSE = _cmd(b"CLSE")
A_WRTE = _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")

COMMAND_NAMES = {
    A_SYNC: "SYNC",
    A_CNXN: "CNXN",
    A_AUTH: "AUTH",
    A_OPEN: "OPEN",
    A_OKAY: "OKAY",
    A_CLSE: "CLSE",
    A_WRTE: "WRTE",
    A_STLS: "STLS",
}

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001

MAX_PAYLOAD_V1 = 4 * 1024
MAX_PAYLOAD = 1024 * 1024
# CNXN and AUTH payloads must fit the legacy limit whatever maxdata says.
MAX_CONNECT_PAYLOAD = 4096


class ProtocolError(VirtualAndroidError):
    """A malformed message on the wire."""


def checksum(data: bytes) -> int:
    """The legacy data_check: the byte sum of the payload, modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")

    def encode(self, with_checksum: bool = True) -> bytes:
        check = checksum(self.data) if with_checksum else 0
        header = HEADER.pack(
            self.command,
            self.arg0 & 0xFFFFFFFF,
            self.arg1 & 0xFFFFFFFF,
            len(self.data),
            check,
            self.command ^ 0xFFFFFFFF,
        )
        return header + self.data

    def __repr__(self) -> str:
        preview = self.data[:40]
        return f"Message({self.name}, {self.arg0}, {self.arg1}, {len(self.data)}B {preview!r})"


@dataclass(frozen=True)
class Header:
    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int
    magic: int


def decode_header(raw: bytes, max_payload: int = MAX_PAYLOAD) -> Header:
    """Parse and validate a 24-byte header."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"short header: {len(raw)} bytes")
    header = Header(*HEADER.unpack(raw))
    if header.magic != header.command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic for command 0x{header.command:08x}")
    if header.command not in COMMAND_NAMES:
        raise ProtocolError(f"unknown command 0x{header.command:08x}")
    if header.data_length > max_payload:
        raise ProtocolError(f"payload too large: {header.data_length} > {max_payload}")
    return header


def verify_checksum(header: Header, data: bytes, version: int) -> bool:
    """Before version 0x01000001 the sender fills data_check; newer peers may send 0."""
    if version >= A_VERSION_SKIP_CHECKSUM and header.data_check == 0:
        return True
    if header.data_check == 0 and not data:
        return True
    return checksum(data) == header.data_check or version >= A_VERSION_SKIP_CHECKSUM
