"""The display as clients see it: screenshots (screencap, uiautomator2, adbutils), `uiautomator
dump`, the app window's decor, rotation and screen power, through the real adb binary,
adbutils and uiautomator2."""

from __future__ import annotations

import io
import struct
import subprocess
import xml.etree.ElementTree as ET

import adbutils
import uiautomator2 as u2
from PIL import Image
from virtual_android import VirtualS24, render_screen

DOCASSIST = "ai.devicelab.docassist"
RUN = f"{DOCASSIST}:id/run"


def background_of(image: Image.Image) -> tuple[int, ...]:
    """The most common colour: what the window is painted with."""
    colours = image.convert("RGB").getcolors(1 << 24) or []
    return max(colours)[1]


def drawn_share(image: Image.Image, box: tuple[int, int, int, int], bg: tuple[int, ...]) -> float:
    """The share of a region's pixels that are not the background colour."""
    region = image.convert("RGB").crop(box)
    colours = region.getcolors(1 << 24) or []
    return sum(n for n, colour in colours if colour != bg) / max(1, region.width * region.height)


def open_docassist(ui: u2.Device) -> tuple[int, int, int, int]:
    ui.app_start(DOCASSIST, ".MainActivity")
    assert ui(resourceId=RUN).wait(timeout=10)
    return ui(resourceId=RUN).bounds()


def test_screencap_png_draws_the_app_a_person_sees(
    adb_server: adbutils.AdbClient, phone: VirtualS24, ui: u2.Device
) -> None:
    run = open_docassist(ui)
    binary = adbutils.adb_path()
    port = str(adb_server.port)
    png = subprocess.run(
        [binary, "-P", port, "-s", phone.serial, "exec-out", "screencap", "-p"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (1080, 2340)
    bg = background_of(image)
    assert len(image.convert("RGB").getcolors(1 << 16) or []) > 20  # not one flat colour
    # The Run button is drawn (a filled button with its label), where the dump says it is;
    # a stretch of empty window below the fields is background only.
    assert drawn_share(image, run, bg) > 0.8
    assert drawn_share(image, (40, 1100, 1040, 1150), bg) == 0.0
    # DocAssist's look: a teal status bar over a light window.
    assert image.getpixel((540, 5))[:3] == (0, 96, 86)
    assert sum(bg) > 700


def test_screencap_to_a_file_and_raw(dev: adbutils.AdbDevice) -> None:
    dev = dev
    dev.shell(["screencap", "-p", "/sdcard/shot.png"])
    image = Image.open(io.BytesIO(dev.sync.read_bytes("/sdcard/shot.png")))
    assert image.size == (1080, 2340)
    raw = dev.shell(["screencap"], encoding=None)
    assert isinstance(raw, bytes)
    width, height, fmt, dataspace = struct.unpack("<4I", raw[:16])
    assert (width, height, fmt) == (1080, 2340, 1)  # RGBA_8888
    assert dataspace == 1  # sRGB, as screencap.cpp's dataSpaceToInt writes it (Android 12+)
    assert len(raw) == 16 + 1080 * 2340 * 4
    pixels = Image.frombytes("RGBA", (width, height), raw[16:])
    assert pixels.convert("RGB").tobytes() == image.convert("RGB").tobytes()
    usage = dev.shell2(["screencap", "-x"])
    assert usage.returncode == 1 and "usage: screencap" in usage.output


def test_uiautomator2_and_adbutils_screenshots_show_the_screen(
    ui: u2.Device, dev: adbutils.AdbDevice
) -> None:
    launcher = ui.screenshot()  # takeScreenshot: a JPEG of the display
    assert launcher.size == (1080, 2340)
    icon = ui(text="DocAssist").bounds()
    run = open_docassist(ui)
    shot = ui.screenshot()
    for image in (shot, dev.screenshot(error_ok=False)):
        assert image.size == (1080, 2340)
        bg = background_of(image)
        assert drawn_share(image, run, bg) > 0.8
    on_display_0 = dev.screenshot(display_id=0, error_ok=False)  # screencap -d ID
    assert on_display_0.size == (1080, 2340)
    # The launcher and the app are different pictures, each with its own content.
    assert drawn_share(launcher, icon, background_of(launcher)) > 0.2
    assert background_of(launcher) != background_of(shot)


def test_render_screen_is_the_picture_clients_get(phone: VirtualS24, ui: u2.Device) -> None:
    open_docassist(ui)
    frame = render_screen(phone)
    assert (frame.width, frame.height) == (1080, 2340)
    assert len(frame.rgba) == 1080 * 2340 * 4
    assert Image.open(io.BytesIO(frame.png())).size == (1080, 2340)
    assert phone.capture_screen().rgba == frame.rgba
    # The framebuffer service's reply, read the way adbutils' framebuffer() reads it.
    reply = frame.framebuffer()
    version, bpp, colour_space, size, width, height = struct.unpack("<6I", reply[:24])
    offsets = struct.unpack("<8I", reply[24:56])
    assert (version, bpp, colour_space, size) == (2, 32, 1, 1080 * 2340 * 4)
    assert (width, height) == (1080, 2340) and offsets == (0, 8, 16, 8, 8, 8, 24, 8)
    assert reply[56:] == frame.rgba


def test_uiautomator_dump_writes_the_u2_servers_xml(ui: u2.Device, dev: adbutils.AdbDevice) -> None:
    open_docassist(ui)
    out = dev.shell(["uiautomator", "dump"])
    # Android's DumpCommand prints "hierchary" (sic), and scripts look for it.
    assert out.strip() == "UI hierchary dumped to: /sdcard/window_dump.xml"
    dumped = ET.fromstring(dev.sync.read_bytes("/sdcard/window_dump.xml"))
    live = ET.fromstring(ui.dump_hierarchy().encode())

    def shape(root: ET.Element) -> list[tuple[str | None, ...]]:
        return [
            (n.get("class"), n.get("resource-id"), n.get("text"), n.get("bounds"))
            for n in root.iter("node")
        ]

    assert shape(dumped) == shape(live)
    assert dev.shell(["uiautomator", "dump", "/data/local/tmp/ui.xml"]).strip() == (
        "UI hierchary dumped to: /data/local/tmp/ui.xml"
    )
    assert f'resource-id="{RUN}"' in dev.dump_hierarchy()  # adbutils' own path
    on_tty = dev.shell(["uiautomator", "dump", "/dev/tty"])  # a common script idiom
    assert on_tty.startswith("<?xml") and on_tty.endswith("UI hierchary dumped to: /dev/tty")


def test_uiautomator_dump_without_a_screen_fails_like_a_phone(
    device: adbutils.AdbDevice,
) -> None:
    result = device.shell2(["uiautomator", "dump"])
    assert "ERROR: null root node returned by UiTestAutomationBridge." in result.output


def test_app_windows_have_the_android_content_root(ui: u2.Device) -> None:
    open_docassist(ui)
    root = ET.fromstring(ui.dump_hierarchy().encode())
    window = root.find("node")
    assert window is not None and window.get("class") == "android.widget.FrameLayout"
    column = window.find("node")
    assert column is not None and column.get("class") == "android.widget.LinearLayout"
    content = column.find("node")
    assert content is not None and content.get("resource-id") == "android:id/content"
    assert content.get("bounds") == "[0,110][1080,2340]"
    assert any(n.get("resource-id") == RUN for n in content.iter("node"))
    assert ui(resourceId="android:id/content").exists


def test_set_orientation_rotates_everything_that_reports_it(
    ui: u2.Device, dev: adbutils.AdbDevice
) -> None:
    open_docassist(ui)
    ui.set_orientation("left")
    info = ui.info
    assert info["displayRotation"] == 1 and info["naturalOrientation"] is False
    assert (info["displayWidth"], info["displayHeight"]) == (2340, 1080)
    assert ui.orientation == "left"
    assert dev.rotation() == 1  # adbutils reads dumpsys display's orientation=
    assert dev.window_size() == (2340, 1080)
    display = dev.shell(["dumpsys", "display"])
    assert "logicalFrame=Rect(0, 0 - 2340, 1080)" in display
    window = dev.shell(["dumpsys", "window", "displays"])
    assert "mCurrentRotation=ROTATION_90" in window and "cur=2340x1080" in window
    assert "mUserRotationMode=USER_ROTATION_LOCKED" in window
    root = ET.fromstring(ui.dump_hierarchy().encode())
    assert root.get("rotation") == "1"
    assert root.find("node").get("bounds") == "[0,0][2340,1080]"  # type: ignore[union-attr]
    assert ui.screenshot().size == (2340, 1080)
    assert dev.shell(["wm", "size"]).strip() == "Physical size: 1080x2340"
    ui.set_orientation("natural")
    assert ui.info["displayRotation"] == 0 and ui.window_size() == (1080, 2340)


def test_user_rotation_applies_only_with_auto_rotate_off(
    dev: adbutils.AdbDevice,
) -> None:
    dev = dev
    dev.shell(["settings", "put", "system", "user_rotation", "1"])
    assert dev.rotation() == 0  # auto-rotate on: the sensor decides, the phone is upright
    dev.shell(["settings", "put", "system", "accelerometer_rotation", "0"])
    assert dev.rotation() == 1
    assert dev.shell(["wm", "user-rotation"]).strip() == "lock 1"
    dev.shell(["wm", "user-rotation", "lock", "2"])
    assert dev.rotation() == 2
    assert "mCurrentRotation=ROTATION_180" in dev.shell(["dumpsys", "window"])
    dev.shell(["wm", "user-rotation", "free"])
    assert dev.rotation() == 0 and dev.shell(["wm", "user-rotation"]).strip() == "free"
    bad = dev.shell2(["wm", "user-rotation", "spin"])
    assert "Error: argument needs to be either -d, free or lock." in bad.output


def test_screen_off_and_on_from_uiautomator2(ui: u2.Device, dev: adbutils.AdbDevice) -> None:
    open_docassist(ui)
    ui.screen_off()
    assert ui.info["screenOn"] is False and dev.is_screen_on() is False
    power = dev.shell(["dumpsys", "power"])
    assert "mWakefulness=Asleep" in power and "Display Power: state=OFF" in power
    assert "state OFF" in dev.shell(["dumpsys", "display"])
    assert "mAwake=false" in dev.shell(["dumpsys", "window", "policy"])
    dark = ui.screenshot()
    assert dark.convert("L").getextrema()[1] < 16  # a phone's screenshot of an off screen
    # Touches do not reach the app while the screen is off.
    ui.click(*ui(resourceId=RUN).center())
    assert ui(resourceId=f"{DOCASSIST}:id/status").get_text() == "idle"
    ui.screen_on()
    assert ui.info["screenOn"] is True and dev.is_screen_on() is True
    power = dev.shell(["dumpsys", "power"])
    assert "mWakefulness=Awake" in power and "Display Power: state=ON" in power


def test_power_keys_from_input_keyevent(device: adbutils.AdbDevice) -> None:
    def on() -> bool:
        return bool(device.is_screen_on())

    device.shell(["input", "keyevent", "223"])  # SLEEP
    assert not on()
    device.shell(["input", "keyevent", "KEYCODE_WAKEUP"])
    assert on()
    device.keyevent("POWER")
    assert not on()
    device.keyevent(26)
    assert on()
    device.switch_screen(False)  # adbutils: keyevent 223
    assert not on()
    device.switch_screen(True)
    assert on()
