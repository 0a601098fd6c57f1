"""The phone's framework as system services (system/): `dumpsys` finds a service by name, each
service answers its own tools and dump, and the apps reach the activity and input managers
by attaching to them, not by replacing their commands. Run in-process, without adb."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from virtual_android.device import VirtualS24
from virtual_android.shell.interpreter import IO, CommandContext, Interpreter
from virtual_android.shell.shellio import BufferOutput, BytesInput, CancelToken
from virtual_android.system.activity import ActivityApp
from virtual_android.system.input import InputEvent
from virtual_android.system.service import ServiceManager, SystemService


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


def sh(device: VirtualS24, script: str) -> Result:
    out, err = BufferOutput(), BufferOutput()
    status = Interpreter(device, CancelToken()).run(script, IO(BytesInput(), out, err))
    return Result(status, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def phone() -> VirtualS24:
    return VirtualS24()  # never started: the shell runs in-process


def test_dumpsys_lists_the_registered_services_and_finds_each_by_name(phone: VirtualS24) -> None:
    listed = sh(phone, "dumpsys -l").stdout.splitlines()
    assert listed[0] == "Currently running services:"
    names = [line.strip() for line in listed[1:]]
    for name in ("activity", "battery", "display", "package", "power", "window"):
        assert name in names
        assert phone.services.get(name) is not None
    assert "SurfaceFlinger" in names and "thermalservice" in names
    missing = sh(phone, "dumpsys nosuch")
    assert missing.status == 0 and missing.stderr == "Can't find service: nosuch\n"


def test_a_registered_service_answers_dumpsys_with_its_arguments() -> None:
    class Echo(SystemService):
        name = "echo"

        def dump(self, ctx: CommandContext, args: list[str]) -> int:
            ctx.write(" ".join(args) + "\n")
            return 3

    manager = ServiceManager()
    manager.add(Echo())
    with pytest.raises(ValueError, match="already registered"):
        manager.add(Echo())
    phone = VirtualS24()
    phone.add_command("dumpsys", manager.commands()["dumpsys"])
    result = sh(phone, "dumpsys echo a b")
    assert (result.status, result.stdout) == (3, "a b\n")


def test_window_and_activity_dump_the_launcher_on_a_phone_without_apps(phone: VirtualS24) -> None:
    window = sh(phone, "dumpsys window displays").stdout
    assert "mCurrentFocus=Window{" in window and "com.sec.android.app.launcher/" in window
    assert "cur=1080x2340" in window
    sh(phone, "wm size 720x1560; settings put system accelerometer_rotation 0")
    sh(phone, "settings put system user_rotation 1")
    rotated = sh(phone, "dumpsys window displays").stdout
    assert "cur=1560x720" in rotated and "mCurrentRotation=ROTATION_90" in rotated
    assert "com.sec.android.app.launcher" in sh(phone, "dumpsys activity top").stdout
    failed = sh(phone, "am start -n ai.mlc.mlcchat/.MainActivity")
    assert failed.status == 1 and "does not exist" in failed.stderr


def test_wm_size_and_density_set_show_and_reset(phone: VirtualS24) -> None:
    assert sh(phone, "wm density").stdout == "Physical density: 416\n"
    assert sh(phone, "wm density 320; wm density").stdout == (
        "Physical density: 416\nOverride density: 320\n"
    )
    assert phone.density_override == 320
    bad = sh(phone, "wm size 12by4")
    assert (bad.status, bad.stderr) == (255, "Error: bad size 12by4\n")
    sh(phone, "wm size 800x1600")
    assert phone.size_override == (800, 1600)
    sh(phone, "wm size reset; wm density reset")
    assert phone.size_override is None
    assert phone.density_override is None


@dataclass
class FakeApp:
    package: str
    main_activity: str = ".Main"
    activities: tuple[str, ...] = (".Main",)
    pid: int | None = None
    started: list[tuple[str, str]] = field(default_factory=list)

    def running(self) -> bool:
        return self.pid is not None

    def current_activity(self) -> str:
        return self.main_activity

    def force_stop(self) -> None:
        self.pid = None


class FakeHost:
    def __init__(self, app: FakeApp) -> None:
        self.only = app
        self.top: FakeApp | None = None

    def app(self, package: str) -> ActivityApp | None:
        return self.only if package == self.only.package else None

    def apps(self) -> list[ActivityApp]:
        return [self.only]

    def top_app(self) -> ActivityApp | None:
        return self.top

    def launch(self, app: ActivityApp, activity: str, extras: dict[str, str], data: str) -> None:
        self.only.pid = 4242
        self.only.started.append((activity, data))
        self.top = self.only


def test_the_activity_manager_starts_and_stops_an_attached_hosts_apps(phone: VirtualS24) -> None:
    app = FakeApp("org.example.app")
    phone.activity.attach(FakeHost(app))
    started = sh(phone, "am start -W -n org.example.app/.Main -d https://example.org/x")
    assert started.status == 0 and "LaunchState: COLD" in started.stdout
    assert app.started == [(".Main", "https://example.org/x")]
    assert "mCurrentFocus=Window{" in sh(phone, "dumpsys window").stdout
    assert "org.example.app/org.example.app.Main" in sh(phone, "dumpsys window").stdout
    assert "pid=4242" in sh(phone, "dumpsys activity top").stdout
    sh(phone, "am force-stop org.example.app")
    assert not app.running()


def test_input_records_events_and_hands_them_to_listeners(phone: VirtualS24) -> None:
    heard: list[InputEvent] = []
    phone.input.on_event(heard.append)
    assert sh(phone, "input tap 10 20; input text hello%sworld").status == 0
    assert [(e.kind, e.args) for e in heard] == [("tap", (10.0, 20.0)), ("text", ("hello world",))]
    assert phone.input_events == heard
    sh(phone, "input keyevent POWER")
    assert not phone.screen_on and heard[-1].args == (26,)
    phone.record_input("tap", (1.0, 1.0), "")  # recorded for tests, injected into no one
    assert len(phone.input_events) == len(heard) + 1


def test_properties_reset_on_reboot_but_persist_ones_survive(phone: VirtualS24) -> None:
    sh(phone, "setprop debug.x 1; setprop persist.y 2")
    refused = sh(phone, "setprop ro.product.model X")
    assert refused.status == 1 and "Failed to set property" in refused.stderr
    phone.properties.reboot()
    assert phone.props.get("debug.x") is None and phone.props["persist.y"] == "2"
    assert sh(phone, "getprop persist.y").stdout == "2\n"


def test_cmd_hands_a_service_over_to_the_tool_the_service_names(phone: VirtualS24) -> None:
    listed = sh(phone, "cmd -l").stdout.split()
    assert {"activity", "input", "package", "settings", "window"} <= set(listed)
    assert sh(phone, "cmd window size 720x1280; cmd window size").stdout == (
        "Physical size: 1080x2340\nOverride size: 720x1280\n"
    )
    assert sh(phone, "cmd settings get global adb_enabled").stdout == "1\n"
    missing = sh(phone, "cmd power")  # a service without a shell tool here
    assert missing.status == 20 and "Can't find service: power" in missing.stderr
