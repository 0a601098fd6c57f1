"""What the display shows, as the device's shell commands and services hand it out.

The screen itself (windows, views, the picture) lives in ``apps`` (``DeviceScreen``); the
device only holds a `ScreenSource` for it, so `screencap`, `uiautomator dump` and the
`framebuffer:` service reach the screen without importing the apps.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Protocol

__all__ = ["COLORSPACE_SRGB", "Frame", "ScreenSource", "black_frame"]

PIXEL_FORMAT_RGBA_8888 = 1
# The colour-space code both `screencap` (raw, after width, height and format, Android 12+:
# screencap.cpp's dataSpaceToInt maps the buffer's V0_SRGB dataspace to it) and adbd's
# `framebuffer:` header write for sRGB; adbutils' framebuffer() reads anything else wrongly.
COLORSPACE_SRGB = 1


@dataclass(frozen=True)
class Frame:
    """One screen image: `width` x `height` pixels, RGBA 8888, rows top to bottom."""

    width: int
    height: int
    rgba: bytes

    def png(self) -> bytes:
        """The PNG `screencap -p` writes (RGBA, 8 bits a channel)."""
        from PIL import Image

        out = io.BytesIO()
        image = Image.frombytes("RGBA", (self.width, self.height), self.rgba)
        image.save(out, format="PNG", compress_level=1)
        return out.getvalue()

    def raw(self) -> bytes:
        """What `screencap` without -p writes: width, height, format, colour space, pixels."""
        header = struct.pack(
            "<4I", self.width, self.height, PIXEL_FORMAT_RGBA_8888, COLORSPACE_SRGB
        )
        return header + self.rgba

    def framebuffer(self) -> bytes:
        """What adbd's `framebuffer:` service sends: the version 2 header (version, bpp,
        colour space 1 = sRGB, size, width, height, then offset and length of red, blue,
        green and alpha), then the pixels."""
        header = struct.pack(
            "<14I",
            2,
            32,
            COLORSPACE_SRGB,
            len(self.rgba),
            self.width,
            self.height,
            0,  # red offset, length
            8,
            16,  # blue
            8,
            8,  # green
            8,
            24,  # alpha
            8,
        )
        return header + self.rgba


def black_frame(width: int, height: int) -> Frame:
    """The screen of a display that is off (or shows nothing)."""
    return Frame(width, height, b"\x00\x00\x00\xff" * (width * height))


class ScreenSource(Protocol):
    """The screen as the device's commands need it (apps.u2server.DeviceScreen is one)."""

    def frame(self) -> Frame:
        """The picture on the display now (black while the screen is off)."""
        ...

    def hierarchy_xml(self, compressed: bool = False) -> str:
        """The windows as `uiautomator dump` writes them."""
        ...
