"""Gestures that take their time, lists that scroll, and uiautomator2's object navigation
(childBy*, getParent, pinch, gesture), through the real adb binary, adbutils and
uiautomator2. Durations are checked only from below: a gesture may never end early."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import adbutils
import pytest
import uiautomator2 as u2
from uiautomator2._selector import Selector
from uiautomator2.exceptions import UiObjectNotFoundError
from virtual_android import VirtualS24, apps_of

DOCASSIST = "ai.devicelab.docassist"
MLCCHAT = "ai.mlc.mlcchat"
RUN = f"{DOCASSIST}:id/run"


def took(action: Callable[[], Any]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def texts(ui: u2.Device) -> list[str]:
    return [n.get("text", "") for n in ET.fromstring(ui.dump_hierarchy().encode()).iter("node")]


def chat_with_a_long_answer(ui: u2.Device, question: str = "the question") -> u2.UiObject:
    """MLCChat with one question and an answer far taller than the message list."""
    ui.app_start(MLCCHAT, ".MainActivity")
    ui(description="start chatting").click(timeout=10)
    assert ui(text="Ready to chat").wait(timeout=30)
    ui(className="android.widget.EditText").set_text(question)
    ui(description="send message").click()
    assert ui(textStartsWith="prefill:").wait(timeout=30)
    return ui(scrollable=True, packageName=MLCCHAT)


def test_input_swipe_lasts_its_duration(device: adbutils.AdbDevice) -> None:
    assert took(lambda: device.shell(["input", "swipe", "500", "1500", "500", "500", "700"])) >= 0.7
    # Without a duration, InputShellCommand swipes for 300 ms.
    assert took(lambda: device.shell(["input", "swipe", "500", "1500", "500", "500"])) >= 0.3
    assert took(lambda: device.swipe(500, 1500, 500, 500, 0.5)) >= 0.5  # adbutils
    swipe = device.shell2(["input", "swipe", "1", "2"])
    assert swipe.returncode != 0 and "swipe needs 4 coordinates" in swipe.output


def test_uiautomator2_gestures_take_their_duration(ui: u2.Device) -> None:
    assert took(lambda: ui.swipe(540, 1500, 540, 900, duration=0.5)) >= 0.5
    assert took(lambda: ui.swipe(540, 1500, 540, 900, steps=100)) >= 0.5  # 5 ms a step
    assert took(lambda: ui.long_click(540, 2000, duration=0.6)) >= 0.6
    assert took(lambda: ui.drag(540, 1500, 540, 900, duration=0.4)) >= 0.4
    assert took(lambda: ui.swipe_points([(540, 1500), (540, 1200), (540, 900)], 0.2)) >= 0.4


def test_a_long_press_on_an_icon_does_not_open_the_app(ui: u2.Device) -> None:
    x, y = ui(text="DocAssist").center()
    ui.long_click(x, y, duration=0.6)  # the launcher's icons are long-clickable
    assert ui.app_current()["package"] == "com.sec.android.app.launcher"
    ui.click(x, y)
    assert ui(resourceId=RUN).wait(timeout=10)


def test_scrolling_moves_the_chat_and_stops_at_its_ends(ui: u2.Device) -> None:
    chat = chat_with_a_long_answer(ui)
    question = ui(text="the question")
    answer = chat.child(textStartsWith="word0 ")
    # The list follows the conversation: it stands at its end, the question out of sight.
    assert not question.exists
    at_end = answer.info["bounds"]
    assert chat.scroll.forward() is False  # at the end: nothing to scroll, as UiScrollable says
    assert chat.scroll.backward() is True
    assert answer.info["bounds"] != at_end  # the content moved
    assert chat.scroll.toBeginning() is True
    assert question.exists
    assert chat.scroll.backward() is False
    assert chat.scroll.forward() is True
    assert chat.scroll.toEnd() is True
    assert not question.exists and answer.info["bounds"] == at_end
    assert chat.scroll.to(text="the question") is True  # scrollTo finds it
    assert question.exists
    assert chat.scroll.to(text="not in the chat") is False
    assert chat.fling.toEnd() is True
    assert not question.exists


def test_a_finger_swipe_scrolls_the_list_under_it(ui: u2.Device, dev: adbutils.AdbDevice) -> None:
    chat_with_a_long_answer(ui)
    left, top, right, bottom = ui(scrollable=True, packageName=MLCCHAT).bounds()
    x = (left + right) // 2
    # Dragging the content down (finger moving down) shows what is above.
    for _ in range(4):
        dev.shell(["input", "swipe", str(x), str(top + 50), str(x), str(bottom - 50), "50"])
    assert ui(text="the question").exists
    ui.swipe(x, bottom - 50, x, top + 50, steps=10)  # and back up, with uiautomator2
    ui.swipe(x, bottom - 50, x, top + 50, steps=10)
    ui.swipe(x, bottom - 50, x, top + 50, steps=10)
    ui.swipe(x, bottom - 50, x, top + 50, steps=10)
    assert not ui(text="the question").exists


def test_a_scroll_view_scrolls_to_its_end(
    ui: u2.Device, phone: VirtualS24, dev: adbutils.AdbDevice
) -> None:
    apps_of(phone).docassist.max_tokens = 300
    ui.app_start(DOCASSIST, ".MainActivity")
    view = ui(className="android.widget.ScrollView")
    assert view.scroll.forward() is False  # nothing to scroll yet
    ui(resourceId=RUN).click(timeout=10)
    assert ui(resourceId=f"{DOCASSIST}:id/status", text="done").wait(timeout=30)
    box = view.bounds()
    before = dev.screenshot().crop(box).tobytes()
    assert view.scroll.forward() is True
    # A ScrollView reports the same visible bounds; what moved is the picture.
    assert dev.screenshot().crop(box).tobytes() != before
    assert view.scroll.toEnd() is True
    assert view.scroll.forward() is False
    assert view.scroll.backward() is True


def test_child_by_text_description_and_instance(ui: u2.Device) -> None:
    workspace = ui(resourceId="com.sec.android.app.launcher:id/workspace")
    icon = workspace.child_by_text("DocAssist", className="android.widget.TextView")
    assert icon.info["text"] == "DocAssist"
    assert workspace.child_by_description("MLCChat", className="android.widget.TextView").exists
    second = workspace.child_by_instance(1, className="android.widget.TextView")
    assert second.get_text() == "Messages"
    with pytest.raises(UiObjectNotFoundError):
        workspace.child_by_text("No such app", className="android.widget.TextView")
    icon.click()  # the object found by id behaves as any UiObject
    assert ui(resourceId=RUN).wait(timeout=10)
    content = ui(resourceId=f"{DOCASSIST}:id/content")
    request = content.child_by_instance(1, className="android.widget.EditText")
    request.set_text("a request")
    assert ui(resourceId=f"{DOCASSIST}:id/request").get_text() == "a request"


def test_get_parent(ui: u2.Device) -> None:
    ui.app_start(DOCASSIST, ".MainActivity")
    assert ui(resourceId=RUN).wait(timeout=10)
    parent = ui.jsonrpc.getParent(ui(resourceId=RUN).selector)
    info = ui.jsonrpc.objInfo(parent)
    assert info["resourceName"] == f"{DOCASSIST}:id/content"
    assert info["childCount"] == 8
    grandparent = ui.jsonrpc.objInfo(ui.jsonrpc.getParent(parent))
    assert grandparent["className"] == "android.widget.FrameLayout"
    status = ui.jsonrpc.getChild(parent, Selector(resourceId=f"{DOCASSIST}:id/status"))
    assert ui.jsonrpc.getText(status) == "idle"
    title = ui.jsonrpc.getFromParent(
        ui(resourceId=RUN).selector, Selector(resourceId=f"{DOCASSIST}:id/title")
    )
    assert ui.jsonrpc.getText(title) == "DocAssist"


def test_pinch_and_two_finger_gestures(ui: u2.Device) -> None:
    ui.app_start(DOCASSIST, ".MainActivity")
    document = ui(resourceId=f"{DOCASSIST}:id/document")
    assert document.wait(timeout=10)
    assert took(lambda: document.pinch_in(percent=60, steps=40)) >= 0.2
    assert document.pinch_out(percent=60, steps=10) is True
    assert document.gesture((300, 600), (700, 600), (100, 600), (900, 600), steps=20) is True
    with pytest.raises(u2.UiObjectNotFoundError):
        ui(text="nothing here").pinch_in()


def test_input_motionevent_taps_and_swipes(ui: u2.Device, dev: adbutils.AdbDevice) -> None:
    x, y = (str(int(v)) for v in ui(text="DocAssist").center())
    dev.shell(["input", "motionevent", "DOWN", x, y])
    dev.shell(["input", "motionevent", "UP", x, y])
    assert ui(resourceId=RUN).wait(timeout=10)
    bad = dev.shell2(["input", "motionevent", "HOVER", "1", "2"])
    assert bad.returncode != 0 and "motionevent needs" in bad.output
    ui.press("back")
    chat_with_a_long_answer(ui)
    left, top, right, bottom = ui(scrollable=True, packageName=MLCCHAT).bounds()
    cx = str((left + right) // 2)
    for _ in range(4):  # drag the content down: what is above comes into view
        dev.shell(["input", "motionevent", "DOWN", cx, str(top + 50)])
        dev.shell(["input", "motionevent", "MOVE", cx, str(bottom - 50)])
        dev.shell(["input", "motionevent", "UP", cx, str(bottom - 50)])
    assert ui(text="the question").exists
