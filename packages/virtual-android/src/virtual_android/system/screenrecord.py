"""`screenrecord`: the display recorded to a real H.264 MP4, as Android 14's screenrecord does."""

from __future__ import annotations

import contextlib
import datetime
import re
from typing import TYPE_CHECKING

from ..fs.filesystem import FsError
from ..video import Mp4Recorder, VideoUnavailable

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler
    from .display import DisplayService

__all__ = ["screenrecord_command"]

# Android 14's screenrecord (frameworks/av/cmds/screenrecord, v1.3): its limits, messages
# and --verbose lines.
_SCREENRECORD_MAX_TIME_S = 180
_SCREENRECORD_MIN_BIT_RATE = 100_000
_SCREENRECORD_MAX_BIT_RATE = 200_000_000
_SCREENRECORD_DEFAULT_BIT_RATE = 20_000_000
# The renderer is Python: look for a new picture a few times a second, not at 60 fps.
_SCREENRECORD_POLL_S = 0.25
# A still screen is encoded again once a second (the picture is kept, not redrawn).
_SCREENRECORD_REPEAT_S = 1.0
_SCREENRECORD_USAGE = """Usage: screenrecord [options] <filename>

Android screenrecord v1.3.  Records the device's display to a .mp4 file.

Options:
--size WIDTHxHEIGHT
    Set the video size, e.g. "1280x720".  Default is the device's main
    display resolution (if supported), 1280x720 if not.  For best results,
    use a size supported by the AVC encoder.
--bit-rate RATE
    Set the video bit rate, in bits per second.  Value may be specified as
    bits or megabits, e.g. '4000000' is equivalent to '4M'.  Default 20Mbps.
--bugreport
    Add additional information, such as a timestamp overlay, that is helpful
    in videos captured to illustrate bugs.
--time-limit TIME
    Set the maximum recording time, in seconds.  Default / maximum is 180.
--display-id ID
    specify the physical display ID to record. Default is the primary display.
    see "dumpsys SurfaceFlinger --display-id" for valid display IDs.
--verbose
    Display interesting information on stdout.
--help
    Show this message.

Recording continues until Ctrl-C is hit or the time limit is reached.

"""


def _screenrecord_value_with_unit(text: str) -> int | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text)
    if match is None:
        return None
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def screenrecord_command(display: DisplayService) -> CommandHandler:
    return lambda ctx: screenrecord(ctx, display)


def screenrecord(ctx: CommandContext, display: DisplayService) -> int:
    args = ctx.argv[1:]
    time_limit = _SCREENRECORD_MAX_TIME_S
    bit_rate = _SCREENRECORD_DEFAULT_BIT_RATE
    size: tuple[int, int] | None = None
    verbose = False
    bugreport = False
    operands: list[str] = []
    with_value = ("--size", "--bit-rate", "--time-limit", "--display-id", "--output-format")
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if not arg.startswith("--") or arg == "--":
            operands.extend(args[i + 1 :] if arg == "--" else [arg])
            if arg == "--":
                break
            i += 1
            continue
        value = inline
        if name in with_value and not eq:
            if i + 1 >= len(args):
                ctx.error(f"screenrecord: option '{name}' requires an argument\n")
                return 2
            i += 1
            value = args[i]
        i += 1
        if name == "--help":
            ctx.error(_SCREENRECORD_USAGE)
            return 0
        if name == "--verbose":
            verbose = True
        elif name == "--bugreport":
            bugreport = True
        elif name in ("--rotate", "--persistent-surface"):
            pass
        elif name == "--time-limit":
            time_limit = int(value) if value.isdigit() else 0
            if not 1 <= time_limit <= _SCREENRECORD_MAX_TIME_S:
                ctx.error(
                    f"Time limit {time_limit}s outside acceptable range "
                    f"[1,{_SCREENRECORD_MAX_TIME_S}]\n"
                )
                return 2
        elif name == "--size":
            match = re.fullmatch(r"(\d+)x(\d+)", value)
            if match is None:
                ctx.error(f"Invalid size '{value}', must be width x height\n")
                return 2
            size = (int(match.group(1)), int(match.group(2)))
            if 0 in size:
                ctx.error(f"Invalid size {size[0]}x{size[1]}\n")
                return 2
        elif name == "--bit-rate":
            rate = _screenrecord_value_with_unit(value)
            if rate is None:
                ctx.error(f"Unable to parse value '{value}'\n")
                return 2
            if not _SCREENRECORD_MIN_BIT_RATE <= rate <= _SCREENRECORD_MAX_BIT_RATE:
                ctx.error(
                    f"Bit rate {rate}bps outside acceptable range "
                    f"[{_SCREENRECORD_MIN_BIT_RATE},{_SCREENRECORD_MAX_BIT_RATE}]\n"
                )
                return 2
            bit_rate = rate
        elif name == "--display-id":
            pass
        elif name == "--output-format":
            if value != "mp4":
                ctx.error(f"Unknown format '{value}'\n")
                return 2
        else:
            ctx.error(f"screenrecord: unrecognized option '{name}'\n")
            return 2
    if len(operands) != 1:
        ctx.error("Must specify output file (see --help).\n")
        return 2
    target = operands[0]
    try:
        ctx.fs.write(target, b"", ctx.cwd)
    except FsError as exc:
        ctx.error(f"Unable to open '{target}': {exc}\n")
        return 1
    display_w, display_h = display.window.display_size()
    width, height = size or (display_w, display_h)
    if width % 2 or height % 2:
        # The AVC encoder takes no odd sizes; the phone's MediaCodec fails to configure.
        ctx.error(
            f"ERROR: unable to configure video/avc codec at {width}x{height} "
            "(err=-2147483648)\n"
            "WARNING: failed at {width}x{height}, retrying at 1280x720\n".format(
                width=width, height=height
            )
        )
        width, height = 1280, 720
    info_page = None
    if bugreport:
        # The --bugreport info page: when, and which build, the recording comes from.
        props = display.properties.props
        info_page = [
            "Android screenrecord v1.3",
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            *(
                f"{key}: {props.get(key, '')}"
                for key in (
                    "ro.build.display.id",
                    "ro.build.fingerprint",
                    "ro.product.model",
                    "ro.build.version.release",
                )
            ),
        ]
    # The overlay changes every frame: --bugreport encodes each look at the screen.
    repeat_s = _SCREENRECORD_POLL_S if bugreport else _SCREENRECORD_REPEAT_S
    try:
        recorder = Mp4Recorder(width, height, bit_rate, info_page)
    except VideoUnavailable as exc:
        ctx.error(f"ERROR: {exc}\n")
        return 1
    if verbose:
        ctx.write(
            f"Display is {display_w}x{display_h} @120.00fps (orientation=ROTATION_0), "
            "layerStack=0\n"
            f"Configuring recorder for {width}x{height} video/avc at "
            f"{bit_rate / 1_000_000:.2f}Mbps\n"
            f"Content area is {width}x{height} at offset x=0 y=0\n"
        )
    last_key: tuple[bool, str] | None = None
    time_up = False
    try:
        while True:
            # A picture is drawn only when what is on screen changed: the hierarchy (with
            # the clock and battery of the status bar) stands for the picture.
            source = display.screen_source
            on = display.screen_on
            key = (on, source.hierarchy_xml() if on and source is not None else "")
            if key != last_key:
                recorder.add(display.capture_screen())
                last_key = key
            elif recorder.since_last_frame() >= repeat_s:
                recorder.repeat()
            if recorder.elapsed() >= time_limit:
                time_up = True
                break
            wait = min(_SCREENRECORD_POLL_S, time_limit - recorder.elapsed())
            if ctx.cancelled.wait(max(0.0, wait)):
                break
    finally:
        # Ctrl-C, `kill -INT`, a closed stream or the time limit: the recording is closed
        # as a playable file in every case, as the phone's SIGINT handler does.
        elapsed = recorder.elapsed()
        data = recorder.finish()
        with contextlib.suppress(FsError):
            ctx.fs.write(target, data, ctx.cwd)
    if verbose and not ctx.cancelled.is_set():
        if time_up:
            ctx.write("Time limit reached\n")
        ctx.write(
            f"Encoder stopping; recorded {recorder.frames} frames in {int(elapsed)} seconds\n"
            "Stopping encoder and muxer\n"
            "Executing: /system/bin/am broadcast -a "
            "android.intent.action.MEDIA_SCANNER_SCAN_FILE -d "
            f"file://{ctx.path(target)}\n"
        )
    return 0
