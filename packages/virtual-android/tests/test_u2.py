"""uiautomator2's on-device server on the virtual S24, driven by the real `uiautomator2.connect`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import adbutils
import pytest
import uiautomator2 as u2
from uiautomator2._selector import Selector
from uiautomator2.exceptions import RPCUnknownError, UiObjectNotFoundError
from virtual_android.apps.hierarchy import render_hierarchy
from virtual_android.apps.screen import screen_of
from virtual_android.apps.selector import match_selector
from virtual_android.apps.u2server import install_uiautomator
from virtual_android.apps.ui import LAUNCHER_PACKAGE, UiNode, Window
from virtual_android.device import VirtualS24

ATTRIBUTES = [
    "index",
    "text",
    "resource-id",
    "class",
    "package",
    "content-desc",
    "checkable",
    "checked",
    "clickable",
    "enabled",
    "focusable",
    "focused",
    "scrollable",
    "long-clickable",
    "password",
    "selected",
    "bounds",
]


def test_connect_starts_app_process_and_info_describes_the_s24(
    d: u2.Device, device: adbutils.AdbDevice, wait: Callable[..., None]
) -> None:
    assert device.shell("pidof app_process").strip().isdigit()
    info = d.info
    assert info["displayWidth"] == 1080 and info["displayHeight"] == 2340
    assert info["productName"] == "e1sxxx" and info["sdkInt"] == 34
    assert info["currentPackageName"] == LAUNCHER_PACKAGE
    assert info["displayRotation"] == 0 and info["screenOn"] is True
    # A second connect finds the running server (GET /ping) and does not start another one.
    again = u2.connect(device.serial)
    assert again.info["productName"] == "e1sxxx"
    assert len(device.shell("pidof app_process").split()) == 1
    d.stop_uiautomator()
    wait(lambda: device.shell2("pidof app_process").returncode == 1, 10)


def test_dump_hierarchy_is_android_xml(d: u2.Device) -> None:
    root = ET.fromstring(d.dump_hierarchy().encode())
    assert root.tag == "hierarchy" and root.get("rotation") == "0"
    nodes = list(root.iter("node"))
    assert nodes and all(set(ATTRIBUTES) <= set(n.attrib) for n in nodes)
    packages = {n.get("package") for n in nodes}
    assert {LAUNCHER_PACKAGE, "com.android.systemui"} <= packages
    labels = {n.get("text") for n in nodes if n.get("package") == LAUNCHER_PACKAGE}
    assert {"Phone", "Settings"} <= labels
    bounds = next(n.get("bounds") for n in nodes if n.get("text") == "Phone")
    assert bounds is not None and bounds.startswith("[") and "][" in bounds
    compressed = ET.fromstring(d.dump_hierarchy(compressed=True).encode())
    assert 0 < len(list(compressed.iter("node"))) <= len(nodes)
    shallow = ET.fromstring(d.dump_hierarchy(max_depth=1).encode())
    assert all(len(list(window)) == 0 for window in shallow)


def test_selectors_over_the_wire(d: u2.Device) -> None:
    assert d(text="Phone").exists
    assert d(textContains="ettin").get_text() == "Settings"
    assert d(textMatches="Pl.y St.*").get_text() == "Play Store"
    assert d(textStartsWith="Mess").info["text"] == "Messages"
    assert d(description="Camera").info["contentDescription"] == "Camera"
    assert d(descriptionContains="ntern").exists
    icons = d(resourceId="com.sec.android.app.launcher:id/icon")
    assert icons.count >= 6
    assert icons[2].get_text() == "Internet"  # instance
    assert d(className="android.widget.TextView", packageName=LAUNCHER_PACKAGE, index=1).exists
    workspace = d(resourceId="com.sec.android.app.launcher:id/workspace")
    assert workspace.child(text="Camera").exists
    assert d(text="Phone").sibling(text="Camera").exists
    assert not d(text="Phone").child(text="Camera").exists
    info = d(text="Phone").info
    assert set(info["bounds"]) == {"left", "top", "right", "bottom"}
    assert info["clickable"] is True and info["packageName"] == LAUNCHER_PACKAGE
    # Selectors search the active window, as UiDevice.findObject does: not the status bar.
    assert not d(resourceId="com.android.systemui:id/clock").exists


def test_missing_objects_raise_uiautomator2_errors(d: u2.Device) -> None:
    with pytest.raises(UiObjectNotFoundError):
        d(text="no such thing").click(timeout=0.3)  # waitForExists said no
    with pytest.raises(UiObjectNotFoundError):
        _ = d(text="no such thing").info  # the server's UiObjectNotFoundException
    with pytest.raises(UiObjectNotFoundError):
        d.jsonrpc.setText(Selector(text="no such thing"), "x")
    assert not d(text="no such thing").exists
    assert d(text="no such thing").wait(timeout=0.2) is False
    assert d(text="no such thing").wait_gone(timeout=0.2) is True


def test_a_bad_regular_expression_is_javas_pattern_syntax_error(d: u2.Device) -> None:
    with pytest.raises(RPCUnknownError, match=r"-32001 java\.util\.regex\.PatternSyntaxException"):
        _ = d(textMatches="Pl(ay").info
    assert d(textMatches="Pl.y St.*").info["text"] == "Play Store"  # it goes on answering


def test_keys_toast_clipboard_and_screenshot(d: u2.Device, virtual_s24: VirtualS24) -> None:
    assert d.press("home") is True and d.press("back") is True
    d.jsonrpc.makeToast("hello from the test", 1000)
    assert d.last_toast == "hello from the test"
    d.clear_toast()
    assert d.last_toast is None
    d.set_clipboard("copied text")
    assert d.clipboard == "copied text"
    image = d.screenshot()
    assert image.size == (1080, 2340)
    d.swipe(500, 1500, 500, 500, steps=10)
    d.click(10, 10)  # the status bar: nothing happens, nothing breaks
    assert d.info["currentPackageName"] == LAUNCHER_PACKAGE


def test_server_killed_from_the_shell_is_restarted_by_uiautomator2(
    d: u2.Device, device: adbutils.AdbDevice, wait: Callable[..., None]
) -> None:
    pid = device.shell("pidof app_process").strip()
    assert device.shell2(["kill", pid]).returncode == 0
    wait(lambda: device.shell2("pidof app_process").returncode == 1, 10)
    # The next call fails over HTTP, and uiautomator2 starts the server again.
    assert d.info["productName"] == "e1sxxx"
    new_pid = device.shell("pidof app_process").strip()
    assert new_pid.isdigit() and new_pid != pid


def test_app_process_runs_only_the_u2_server(
    virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    install_uiautomator(virtual_s24)
    result = device.shell2("CLASSPATH=/data/local/tmp/u2.jar app_process / com.wetest.uia2.Main")
    assert result.returncode == 1 and "ClassNotFoundException" in result.output  # no jar yet
    result = device.shell2("app_process / com.example.Main")
    assert result.returncode == 1 and "com.example.Main" in result.output


def test_selector_matching_and_xml_escaping_offline() -> None:
    """match_selector and render_hierarchy on a hand-built tree (no adb needed)."""
    leaf = UiNode("android.widget.TextView", (0, 0, 10, 10), text='a <b> & "c"\n\x01d')
    edit = UiNode("android.widget.EditText", (0, 10, 10, 20), text="Input", hint="Input")
    plain = UiNode("android.widget.LinearLayout", (0, 0, 10, 20), children=[leaf])
    root = UiNode("android.widget.FrameLayout", (0, 0, 100, 100), children=[plain, edit])
    for node in root.walk():
        node.package = "p"
    assert match_selector([root], Selector(className="android.widget.EditText")) == [edit]
    assert match_selector([root], Selector(textMatches="(?s)a.*", instance=0)) == [leaf]
    assert match_selector([root], Selector(textMatches="(?s)a.*", instance=1)) == []
    assert match_selector([root], Selector(textMatches="a.*")) == []  # no DOTALL, as in Java
    assert match_selector([root], Selector(index=1, packageName="p")) == [edit]
    assert match_selector([root], Selector(index=0, className="android.widget.TextView")) == [leaf]
    assert match_selector([root], Selector(enabled=True, textStartsWith="In")) == [edit]
    xml = render_hierarchy([Window("p", ".Main", root)], rotation=0)
    parsed = ET.fromstring(xml.encode())
    texts = [n.get("text") for n in parsed.iter("node")]
    assert texts == ["", "", 'a <b> & "c"\nd', "Input"]
    # The compressed dump leaves out layout-only containers, keeping their children.
    compressed = ET.fromstring(render_hierarchy([Window("p", ".Main", root)], 0, True).encode())
    assert [n.get("class") for n in compressed.iter("node")] == [
        "android.widget.FrameLayout",
        "android.widget.TextView",
        "android.widget.EditText",
    ]


def test_screen_is_one_per_device(virtual_s24: VirtualS24) -> None:
    assert screen_of(virtual_s24) is screen_of(virtual_s24)
    with VirtualS24() as other:
        assert screen_of(other) is not screen_of(virtual_s24)
