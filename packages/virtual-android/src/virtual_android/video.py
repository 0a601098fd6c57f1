"""What `screenrecord` writes: the display encoded as H.264 in an MP4 file.

PyAV (FFmpeg's libraries, as the `video` extra installs them) does the encoding; without it
`screenrecord` says which install brings it. Frames come with their real capture times, as
the phone's encoder stamps them: a screen that does not change adds no frame (screenrecord
on a phone also only encodes when SurfaceFlinger composes a new picture).
"""

from __future__ import annotations

import datetime
import io
import time
from fractions import Fraction
from typing import Any

from .display import Frame
from .errors import VirtualAndroidError

__all__ = ["VIDEO_INSTALL_HINT", "Mp4Recorder", "VideoUnavailable"]

VIDEO_INSTALL_HINT = "pip install 'virtual-android[video]'"


class VideoUnavailable(VirtualAndroidError, RuntimeError):
    """PyAV is missing: the virtual phone cannot encode video."""


def _h264_codec(av: Any) -> str:
    for name in ("libx264", "libopenh264", "h264"):
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        return name
    raise VideoUnavailable("this PyAV build has no H.264 encoder")


class Mp4Recorder:
    """Encodes frames of `width` x `height` (even numbers) into an MP4 held in memory."""

    def __init__(
        self, width: int, height: int, bit_rate: int, info_page: list[str] | None = None
    ) -> None:
        """With `info_page` (screenrecord --bugreport) the video opens on a page of those
        lines for a second and every frame gets a timestamp and frame number overlay."""
        try:
            import av
        except ImportError as exc:
            raise VideoUnavailable(
                f"screenrecord needs PyAV to encode video: {VIDEO_INSTALL_HINT}"
            ) from exc
        self.width = width
        self.height = height
        self.frames = 0
        self._av: Any = av
        self._out = io.BytesIO()
        self._container: Any = av.open(self._out, mode="w", format="mp4")
        stream: Any = self._container.add_stream(_h264_codec(av), rate=30)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        # Timestamps in milliseconds of wall time: a variable frame rate, as the phone's.
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
        if stream.codec.name == "libx264":
            stream.codec_context.options = {"preset": "ultrafast", "tune": "stillimage"}
        self._stream = stream
        self._start = time.monotonic()
        self._last_pts = -1
        self._last_image: Any = None
        self._overlay = info_page is not None
        self._offset_ms = 0
        if info_page is not None:
            self._encode(self._text_image(info_page, (self.width, self.height)), overlay=False)
            self._offset_ms = 1000  # the screen follows the page a second later

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def add(self, frame: Frame) -> None:
        """Encode `frame` as shown now (scaled to the recording size)."""
        from PIL import Image

        image = Image.frombytes("RGBA", (frame.width, frame.height), frame.rgba).convert("RGB")
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        self._last_image = image
        self._encode(image)

    def repeat(self) -> None:
        """Encode the last picture again, stamped now: a still screen still gets a frame
        now and then, so players seek and show progress through it."""
        if self._last_image is not None:
            self._encode(self._last_image)

    def since_last_frame(self) -> float:
        return self.elapsed() - max(0, self._last_pts - self._offset_ms) / 1000

    @staticmethod
    def _text_image(lines: list[str], size: tuple[int, int]) -> Any:
        from PIL import Image, ImageDraw, ImageFont

        image = Image.new("RGB", size)
        font = ImageFont.load_default(size=max(12, size[0] // 36))
        draw = ImageDraw.Draw(image)
        y = size[1] // 20
        for line in lines:
            draw.text((size[0] // 30, y), line, fill=(255, 255, 255), font=font)
            y += int(max(12, size[0] // 36) * 1.5)
        return image

    def _stamped(self, image: Any) -> Any:
        """The picture with the wall clock and the frame number over its top left corner."""
        from PIL import ImageDraw, ImageFont

        stamped = image.copy()
        text = f"{datetime.datetime.now().strftime('%H:%M:%S.%f')[:-3]} {self.frames:06d}"
        size = max(12, self.width // 30)
        font = ImageFont.load_default(size=size)
        draw = ImageDraw.Draw(stamped)
        box = draw.textbbox((0, 0), text, font=font)
        draw.rectangle((0, 0, box[2] + size // 2, box[3] + size // 2), fill=(0, 0, 0))
        draw.text((size // 4, size // 4), text, fill=(255, 255, 255), font=font)
        return stamped

    def _encode(self, image: Any, overlay: bool = True) -> None:
        if overlay and self._overlay:
            image = self._stamped(image)
        pts = max(self._last_pts + 1, self._offset_ms + int(self.elapsed() * 1000))
        video_frame = self._av.VideoFrame.from_image(image)
        video_frame.pts = pts
        video_frame.time_base = Fraction(1, 1000)
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def finish(self) -> bytes:
        """Close the file: repeat the last picture at the stop time (so the video lasts as
        long as the recording did), flush the encoder, write the MP4 index."""
        if self._offset_ms + int(self.elapsed() * 1000) > self._last_pts + 1:
            self.repeat()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._out.getvalue()
