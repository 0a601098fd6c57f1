"""`screenrecord` as real clients drive it: `adb shell screenrecord` then `adb pull`, Ctrl-C
on the adb client, adbutils' start_recording/stop_recording; the MP4 is decoded back and
compared with the screen."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import adbutils
import av
import pytest
from PIL import Image, ImageChops, ImageStat
from virtual_android import VirtualS24, render_screen
from virtual_android.pytest_plugin import AdbRunner, wait_until

DOCASSIST = "ai.devicelab.docassist/.MainActivity"


def decode(path: Path) -> tuple[str, float, list[Image.Image]]:
    """The codec, the duration in seconds and the frames of an MP4 file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = [frame.to_image() for frame in container.decode(video=0)]
        duration = float(container.duration or 0) / av.time_base
    return codec, duration, frames


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean per-channel difference (0..255) of two pictures, compared at a small size."""
    size = (108, 234)
    a = a.convert("RGB").resize(size)
    b = b.convert("RGB").resize(size)
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def screen_now(phone: VirtualS24) -> Image.Image:
    frame = render_screen(phone)
    return Image.frombytes("RGBA", (frame.width, frame.height), frame.rgba)


def open_app(adb: AdbRunner, phone: VirtualS24) -> None:
    started = adb("-s", phone.serial, "shell", "am", "start", "-n", DOCASSIST)
    assert started.returncode == 0, started.stderr


def test_time_limited_recording_is_a_playable_h264_video_of_the_screen(
    adb: AdbRunner, phone: VirtualS24, tmp_path: Path
) -> None:
    open_app(adb, phone)
    began = time.monotonic()
    result = adb(
        "-s", phone.serial, "shell", "screenrecord", "--time-limit", "2", "--verbose",
        "/sdcard/x.mp4",
    )  # fmt: skip
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert took >= 2.0  # it records until the limit, then returns
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Display is 1080x2340 @")
    assert "Configuring recorder for 1080x2340 video/avc at 20.00Mbps" in lines
    assert "Time limit reached" in lines
    assert any(line.startswith("Encoder stopping; recorded ") for line in lines)
    local = tmp_path / "x.mp4"
    pulled = adb("-s", phone.serial, "pull", "/sdcard/x.mp4", str(local))
    assert pulled.returncode == 0, pulled.stderr
    codec, duration, frames = decode(local)
    assert codec == "h264"
    assert 1.5 <= duration <= 4.0
    assert frames and all(f.size == (1080, 2340) for f in frames)
    # The video shows the app that is on screen, not a flat or black picture.
    assert difference(frames[0], screen_now(phone)) < 8
    assert difference(frames[0], Image.new("RGB", (1080, 2340))) > 30


def test_size_and_bit_rate_shape_the_video(
    adb: AdbRunner, phone: VirtualS24, tmp_path: Path
) -> None:
    open_app(adb, phone)
    result = adb(
        "-s", phone.serial, "shell", "screenrecord", "--time-limit=1", "--size", "540x1170",
        "--bit-rate", "4M", "--verbose", "/sdcard/small.mp4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Configuring recorder for 540x1170 video/avc at 4.00Mbps" in result.stdout
    local = tmp_path / "small.mp4"
    assert adb("-s", phone.serial, "pull", "/sdcard/small.mp4", str(local)).returncode == 0
    _, _, frames = decode(local)
    assert frames and all(f.size == (540, 1170) for f in frames)
    assert difference(frames[0], screen_now(phone)) < 8


def test_bugreport_opens_on_an_info_page_and_stamps_each_frame(
    adb: AdbRunner, phone: VirtualS24, tmp_path: Path
) -> None:
    open_app(adb, phone)
    result = adb(
        "-s", phone.serial, "shell", "screenrecord", "--bugreport", "--time-limit", "2",
        "/sdcard/bug.mp4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    local = tmp_path / "bug.mp4"
    assert adb("-s", phone.serial, "pull", "/sdcard/bug.mp4", str(local)).returncode == 0
    _, duration, frames = decode(local)
    assert duration >= 2.5  # the info page's second, then the two recorded
    page, screen = frames[0], screen_now(phone)
    # The page: white text on black, not the screen.
    assert difference(page, screen) > 30
    assert len(page.convert("L").getcolors(1 << 16) or []) > 2
    # Then the screen, with a clock and frame counter over its top left corner that
    # changes from frame to frame.
    corner = (0, 0, 400, 60)
    rest = (0, 200, 1080, 2340)
    later = frames[1:]
    assert len(later) >= 4
    assert difference(later[-1].crop(rest), screen.crop(rest)) < 8
    assert difference(later[0].crop(corner), screen.crop(corner)) > 20
    assert difference(later[0].crop(corner), later[-1].crop(corner)) > 1


def test_ctrl_c_on_the_adb_client_finishes_the_file(
    adb_server: adbutils.AdbClient, adb: AdbRunner, phone: VirtualS24, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [adbutils.adb_path(), "-P", str(adb_server.port), "-s", phone.serial, "shell",
         "screenrecord", "/sdcard/cut.mp4"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # As from a terminal: tests run as a background job inherit SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(1.5)
    open_app(adb, phone)  # the screen changes while it records
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    local = tmp_path / "cut.mp4"

    def finished() -> bool:
        local.unlink(missing_ok=True)
        adb("-s", phone.serial, "pull", "/sdcard/cut.mp4", str(local))
        return local.exists() and local.stat().st_size > 0

    wait_until(finished, timeout=10)
    _, duration, frames = decode(local)
    assert 2.0 <= duration < 60  # stopped at the interrupt, far short of the 180 s default
    # First the launcher, then the app: the recording follows the screen.
    assert len(frames) >= 2
    assert difference(frames[-1], screen_now(phone)) < 8
    assert difference(frames[0], frames[-1]) > 3


def test_adbutils_start_and_stop_recording(
    adb: AdbRunner, phone: VirtualS24, dev: adbutils.AdbDevice, tmp_path: Path
) -> None:
    local = tmp_path / "adbutils.mp4"
    dev.start_recording(str(local))
    assert dev.is_recording()
    time.sleep(1.0)
    open_app(adb, phone)
    time.sleep(1.0)
    dev.stop_recording()
    codec, duration, frames = decode(local)
    assert codec == "h264" and duration >= 1.5
    assert frames[0].size == (1080, 2340)
    assert difference(frames[-1], screen_now(phone)) < 8
    # adbutils removes its file on the phone after pulling it.
    listing = adb("-s", phone.serial, "shell", "ls /sdcard/").stdout
    assert "adbutils-tmp-video" not in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Must specify output file (see --help)."),
        (["a.mp4", "b.mp4"], "Must specify output file (see --help)."),
        (["--time-limit", "0", "/sdcard/a.mp4"], "Time limit 0s outside acceptable range [1,180]"),
        (["--time-limit", "181", "/sdcard/a.mp4"], "Time limit 181s outside acceptable range"),
        (["--size", "big", "/sdcard/a.mp4"], "Invalid size 'big', must be width x height"),
        (["--bit-rate", "1", "/sdcard/a.mp4"], "Bit rate 1bps outside acceptable range"),
        (["--frobnicate", "/sdcard/a.mp4"], "unrecognized option '--frobnicate'"),
        (["/sdcard/a.mp4", "--time-limit"], "option '--time-limit' requires an argument"),
    ],
)
def test_bad_arguments_are_refused_as_on_a_phone(
    adb: AdbRunner, virtual_s24: VirtualS24, args: list[str], message: str
) -> None:
    result = adb("-s", virtual_s24.serial, "shell", "screenrecord", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert adb("-s", virtual_s24.serial, "shell", "ls", "/sdcard/a.mp4").returncode != 0


def test_help_and_an_unwritable_path(adb: AdbRunner, virtual_s24: VirtualS24) -> None:
    helped = adb("-s", virtual_s24.serial, "shell", "screenrecord", "--help")
    assert helped.returncode == 0 and "Usage: screenrecord [options] <filename>" in helped.stderr
    denied = adb("-s", virtual_s24.serial, "shell", "screenrecord", "/system/x.mp4")
    assert denied.returncode == 1 and "Unable to open '/system/x.mp4'" in denied.stderr


def test_without_pyav_it_names_the_install(
    adb: AdbRunner, virtual_s24: VirtualS24, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` meets when it is missing
    result = adb("-s", virtual_s24.serial, "shell", "screenrecord", "/sdcard/a.mp4")
    assert result.returncode == 1
    assert "pip install 'virtual-android[video]'" in result.stderr


def test_background_jobs_have_a_pid_that_kill_and_wait_honour(
    adb: AdbRunner, virtual_s24: VirtualS24
) -> None:
    began = time.monotonic()
    result = adb(
        "-s", virtual_s24.serial, "shell",
        'sleep 30 & P=$!; ps -A | grep -c " $P "; kill -INT $P; wait; echo waited',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "waited"]
    assert time.monotonic() - began < 20
