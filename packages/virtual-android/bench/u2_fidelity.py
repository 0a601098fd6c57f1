"""How many of uiautomator2's (and adbutils') UI calls behave on the virtual S24 as on a phone.

    python packages/virtual-android/bench/u2_fidelity.py [--json]

Starts a phone (`make_phone`, a scripted model so nothing real runs) on a private adb
server (the real adb binary adbutils ships), connects uiautomator2 3.x to it and runs each
call the fidelity issue lists, the way a test script would. Each call is classified:
`phone` when it does what an Android 14 phone (Galaxy S24, 1080x2340) does, otherwise the
way it differs (`refused`: an error where a phone answers; `wrong`: accepted, but the
result is not a phone's). Only public calls are used, so the same script measures any
version of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import adbutils
import uiautomator2 as u2
from PIL import Image
from virtual_android import (
    WordsBackend,
    free_port,
    make_phone,
    shutdown_phone,
)

DOCASSIST = "ai.devicelab.docassist"
MLCCHAT = "ai.mlc.mlcchat"
ANSWER_WORDS = 400  # enough text that the answer overflows its scroll view


@dataclass
class Result:
    call: str
    verdict: str  # phone | refused | wrong
    detail: str


class Bench:
    def __init__(self, d: u2.Device, dev: adbutils.AdbDevice, adb: list[str]) -> None:
        self.d = d
        self.dev = dev
        self.adb = adb
        self.results: list[Result] = []

    def check(self, call: str, fn: Callable[[], str | None]) -> None:
        try:
            problem = fn()
            verdict, detail = ("phone", "") if problem is None else ("wrong", problem)
        except Exception as exc:  # a refusal is an outcome to record, not a crash
            verdict, detail = "refused", f"{type(exc).__name__}: {str(exc)[:120]}"
        self.results.append(Result(call, verdict, detail))
        print(f"  {verdict:8} {call}  {detail}", flush=True)

    def shell(self, *args: str) -> str:
        return str(self.dev.shell(list(args)))

    def timed(self, fn: Callable[[], Any]) -> float:
        began = time.monotonic()
        fn()
        return time.monotonic() - began


def _not_flat(image: Image.Image) -> str | None:
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 3:
        return f"{len(colours)} colour(s): a blank picture"
    return None


def _element_drawn(image: Image.Image, bounds: tuple[int, int, int, int]) -> str | None:
    """The element's region holds more than one colour (something is drawn there)."""
    region = image.convert("RGB").crop(bounds)
    colours = region.getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 2:
        return f"nothing drawn at {bounds}"
    return None


def run_checks(b: Bench) -> None:
    d, dev = b.d, b.dev

    # What already worked (kept in the measure so regressions show).
    def info() -> str | None:
        i = d.info
        ok = i["displayWidth"] == 1080 and i["displayHeight"] == 2340 and i["sdkInt"] == 34
        return None if ok else f"info {i}"

    b.check("connect + info", info)

    def app_start_current_stop() -> str | None:
        d.app_start(DOCASSIST, ".MainActivity")
        if not d(resourceId=f"{DOCASSIST}:id/run").wait(timeout=10):
            return "DocAssist did not show"
        if d.app_current()["package"] != DOCASSIST:
            return f"app_current {d.app_current()}"
        d.app_stop(DOCASSIST)
        return None

    b.check("app_start/app_current/app_stop", app_start_current_stop)
    d.app_start(DOCASSIST, ".MainActivity")
    d(resourceId=f"{DOCASSIST}:id/run").wait(timeout=10)

    def set_text_click() -> str | None:
        d(resourceId=f"{DOCASSIST}:id/request").set_text("Summarize it")
        got = d(resourceId=f"{DOCASSIST}:id/request").get_text()
        return None if got == "Summarize it" else f"get_text {got!r}"

    b.check("selector set_text/get_text", set_text_click)
    b.check(
        "xpath",
        lambda: None if d.xpath('//*[@text="Run"]').exists else "xpath found nothing",
    )

    def clipboard() -> str | None:
        d.clipboard = "copied"
        return None if d.clipboard == "copied" else f"clipboard {d.clipboard!r}"

    b.check("clipboard", clipboard)

    def toast() -> str | None:
        d.toast.show("hello", 1.0)
        return None if d.toast.get_message(2, 2) == "hello" else "no toast"

    b.check("toast", toast)

    # The window and its picture.
    def content_root() -> str | None:
        xml = d.dump_hierarchy()
        return None if 'resource-id="android:id/content"' in xml else "no android:id/content"

    b.check("app window has android:id/content", content_root)

    run_bounds = d(resourceId=f"{DOCASSIST}:id/run").bounds()

    def u2_screenshot() -> str | None:
        image = d.screenshot()
        if image.size != (1080, 2340):
            return f"size {image.size}"
        return _not_flat(image) or _element_drawn(image, run_bounds)

    b.check("d.screenshot()", u2_screenshot)

    def adbutils_screenshot() -> str | None:
        image = dev.screenshot(error_ok=False)
        if image.size != (1080, 2340):
            return f"size {image.size}"
        return _not_flat(image) or _element_drawn(image, run_bounds)

    b.check("adbutils screenshot (screencap -p)", adbutils_screenshot)

    def screencap_raw() -> str | None:
        raw = dev.shell(["screencap"], encoding=None)
        assert isinstance(raw, bytes)
        width, height = int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:8], "little")
        if (width, height) != (1080, 2340) or len(raw) != 16 + width * height * 4:
            return f"raw header {width}x{height}, {len(raw)} bytes"
        image = Image.frombytes("RGBA", (width, height), raw[16:])
        return _not_flat(image)

    b.check("screencap (raw)", screencap_raw)

    def uiautomator_dump() -> str | None:
        out = b.shell("uiautomator", "dump")
        if "UI hierchary dumped to: /sdcard/window_dump.xml" not in out:
            return f"printed {out[:80]!r}"
        data = dev.sync.read_bytes("/sdcard/window_dump.xml")
        dumped = ET.fromstring(data)
        live = ET.fromstring(d.dump_hierarchy().encode())
        if [n.get("bounds") for n in dumped.iter("node")] != [
            n.get("bounds") for n in live.iter("node")
        ]:
            return "differs from the u2 server's dump"
        return None

    b.check("uiautomator dump", uiautomator_dump)
    b.check(
        "adbutils dump_hierarchy",
        lambda: None if "android:id/content" in dev.dump_hierarchy() else "no app window",
    )

    # Gestures take their duration.
    def input_swipe() -> str | None:
        took = b.timed(lambda: b.shell("input", "swipe", "540", "1800", "540", "1700", "800"))
        return None if took >= 0.8 else f"input swipe 800 ms returned in {took:.2f} s"

    b.check("input swipe x1 y1 x2 y2 800", input_swipe)

    def swipe_duration() -> str | None:
        took = b.timed(lambda: d.swipe(540, 1800, 540, 1700, duration=0.6))
        return None if took >= 0.6 else f"swipe 0.6 s returned in {took:.2f} s"

    b.check("d.swipe(duration=0.6)", swipe_duration)

    def long_click_duration() -> str | None:
        took = b.timed(lambda: d.long_click(100, 1200, duration=0.8))
        return None if took >= 0.8 else f"long_click 0.8 s returned in {took:.2f} s"

    b.check("d.long_click(duration=0.8)", long_click_duration)

    def drag_duration() -> str | None:
        took = b.timed(lambda: d.drag(540, 1800, 540, 1700, duration=0.5))
        return None if took >= 0.5 else f"drag 0.5 s returned in {took:.2f} s"

    b.check("d.drag(duration=0.5)", drag_duration)

    def swipe_points() -> str | None:
        took = b.timed(lambda: d.swipe_points([(540, 1800), (540, 1750), (540, 1700)], 0.2))
        return None if took >= 0.4 else f"2 segments of 0.2 s returned in {took:.2f} s"

    b.check("d.swipe_points", swipe_points)

    # Two-finger gestures and UiObject navigation.
    target = d(resourceId=f"{DOCASSIST}:id/document")
    b.check("pinch_in", lambda: None if target.pinch_in(percent=50, steps=10) else "False")
    b.check("pinch_out", lambda: None if target.pinch_out(percent=50, steps=10) else "False")
    b.check(
        "gesture",
        lambda: (
            None
            if target.gesture((300, 600), (700, 600), (100, 600), (900, 600), steps=10)
            else "False"
        ),
    )

    def child_by_text() -> str | None:
        row = d(resourceId=f"{DOCASSIST}:id/content").child_by_text(
            "Run", className="android.widget.Button"
        )
        return None if row.info["text"] == "Run" else f"found {row.info}"

    b.check("child_by_text", child_by_text)

    def child_by_description() -> str | None:
        d.press("home")
        icon = d(resourceId="com.sec.android.app.launcher:id/workspace").child_by_description(
            "DocAssist", className="android.widget.TextView"
        )
        ok = icon.info["contentDescription"] == "DocAssist"
        d.app_start(DOCASSIST, ".MainActivity")
        return None if ok else f"found {icon.info}"

    b.check("child_by_description", child_by_description)

    def child_by_instance() -> str | None:
        d(resourceId=f"{DOCASSIST}:id/run").wait(timeout=10)
        edit = d(resourceId=f"{DOCASSIST}:id/content").child_by_instance(
            1, className="android.widget.EditText"
        )
        rid = edit.info["resourceName"]
        return None if rid == f"{DOCASSIST}:id/request" else f"found {rid}"

    b.check("child_by_instance", child_by_instance)

    def get_parent() -> str | None:
        name = d.jsonrpc.getParent(d(resourceId=f"{DOCASSIST}:id/run").selector)
        parent = d.jsonrpc.objInfo(name)
        return None if parent["childCount"] >= 2 else f"parent {parent}"

    b.check("getParent", get_parent)

    # Scrolling moves content and stops at the end.
    def scroll() -> str | None:
        # MLCChat's message list follows the conversation: it stands at its end, and an
        # answer taller than the list pushes the question out of sight above it.
        d.app_start(MLCCHAT, ".MainActivity")
        d(description="start chatting").click(timeout=10)
        if not d(text="Ready to chat").wait(timeout=30):
            return "the chat did not get ready"
        d(className="android.widget.EditText").set_text("the question")
        d(description="send message").click()
        if not d(textStartsWith="prefill:").wait(timeout=30):
            return "no answer"
        question = d(text="the question")
        chat = d(scrollable=True, packageName=MLCCHAT)
        if question.exists:
            return "the answer does not overflow the list"
        if chat.scroll.forward():
            return "scroll.forward at the end of the chat returned True"
        if not chat.scroll.backward():
            return "scroll.backward returned False with the question out of sight"
        chat.scroll.toBeginning()
        if not question.exists:
            return "scroll.toBeginning did not bring the question back"
        if chat.scroll.backward():
            return "scroll.backward at the beginning returned True"
        chat.scroll.toEnd()
        if question.exists or chat.scroll.forward():
            return "scroll.toEnd did not reach the end"
        d.app_stop(MLCCHAT)
        return None

    b.check("scroll.forward/toEnd", scroll)

    # Orientation and screen power.
    def orientation() -> str | None:
        d.set_orientation("left")
        try:
            i = d.info
            rotation = dev.rotation()
            xml = d.dump_hierarchy()
            if i["displayRotation"] != 1 or (i["displayWidth"], i["displayHeight"]) != (
                2340,
                1080,
            ):
                return f"info after left: {i['displayRotation']}, {i['displayWidth']}"
            if rotation != 1:
                return f"dumpsys display orientation {rotation}"
            if 'rotation="1"' not in xml or "[2340,1080]" not in xml:
                return "hierarchy not rotated"
            if "mCurrentRotation=ROTATION_90" not in b.shell("dumpsys", "window", "displays"):
                return "dumpsys window does not say ROTATION_90"
            if d.screenshot().size != (2340, 1080):
                return "screenshot not landscape"
            return None
        finally:
            d.set_orientation("natural")

    b.check("set_orientation('left')", orientation)

    def user_rotation() -> str | None:
        b.shell("settings", "put", "system", "accelerometer_rotation", "0")
        b.shell("settings", "put", "system", "user_rotation", "3")
        try:
            return None if dev.rotation() == 3 else f"rotation {dev.rotation()}"
        finally:
            b.shell("settings", "put", "system", "user_rotation", "0")
            b.shell("settings", "put", "system", "accelerometer_rotation", "1")

    b.check("settings put system user_rotation", user_rotation)

    def screen_off() -> str | None:
        d.screen_off()
        try:
            power = b.shell("dumpsys", "power")
            if d.info["screenOn"] or dev.is_screen_on():
                return "still on after screen_off"
            if "mWakefulness=Asleep" not in power or "Display Power: state=OFF" not in power:
                return "dumpsys power still awake"
            if "state OFF" not in b.shell("dumpsys", "display"):
                return "dumpsys display still ON"
        finally:
            d.screen_on()
        return None if d.info["screenOn"] and dev.is_screen_on() else "screen_on did not wake"

    b.check("screen_off/screen_on", screen_off)

    def power_key() -> str | None:
        b.shell("input", "keyevent", "223")
        off = dev.is_screen_on()
        b.shell("input", "keyevent", "224")
        on = dev.is_screen_on()
        b.shell("input", "keyevent", "POWER")
        toggled = dev.is_screen_on()
        b.shell("input", "keyevent", "26")
        if off or not on or toggled:
            return f"SLEEP->{off}, WAKEUP->{on}, POWER->{toggled}"
        return None

    b.check("input keyevent 223/224/POWER", power_key)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    port = free_port()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    adb_bin = adbutils.adb_path()
    subprocess.run([adb_bin, "-P", str(port), "start-server"], check=True, capture_output=True)
    client = adbutils.AdbClient(host="127.0.0.1", port=port)
    adbutils.adb = client  # u2.connect(serial) uses adbutils' module-level client
    weights = Path(tempfile.mkdtemp()) / "long-answer.gguf"
    weights.write_bytes(b"GGUF" + bytes(1024))
    phone = make_phone(
        backend=lambda path, *, n_ctx, threads: WordsBackend(path or weights, ANSWER_WORDS)
    )
    phone.start()
    results: list[Result] = []
    try:
        client.connect(phone.serial, timeout=10)
        deadline = time.monotonic() + 10
        while not any(x.serial == phone.serial for x in client.device_list()):
            if time.monotonic() > deadline:
                raise SystemExit("the adb server did not list the phone")
            time.sleep(0.05)
        d = u2.connect(phone.serial)
        bench = Bench(d, client.device(phone.serial), [adb_bin, "-P", str(port)])
        print(f"uiautomator2 {version('uiautomator2')} on {phone.serial}:")
        run_checks(bench)
        results = bench.results
        d.stop_uiautomator(wait=False)
    finally:
        threading.Thread(target=shutdown_phone, args=(phone,), daemon=True).start()
        subprocess.run([adb_bin, "-P", str(port), "kill-server"], capture_output=True)
    counts = {v: sum(r.verdict == v for r in results) for v in ("phone", "refused", "wrong")}
    total = len(results)
    print(
        f"\nas on a phone: {counts['phone']}/{total} ({100 * counts['phone'] / total:.0f} %); "
        f"refused {counts['refused']}, wrong {counts['wrong']}"
    )
    if args.json:
        json.dump([r.__dict__ for r in results], sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
