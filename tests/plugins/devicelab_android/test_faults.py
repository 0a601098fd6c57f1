"""What a phone does to a trial, against the virtual S24 over the real adb binary: a killed
engine, a killed app, an app gone from the screen, a UI server gone with a reboot. Each is a
device fault (DeviceLostError: the scheduler retries the trial), and the next trial works
again; the app's engine is every process of its UID."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable

import pytest
from devicelab_android.app import AppEngine, server_gone
from devicelab_android.device import AndroidDevice
from devicelab_android.llamacli import LlamaCliEngine
from devicelab_android.telemetry import parse_uids

from devicelab import (
    DeviceLostError,
    EngineError,
    GenerationRequest,
    Message,
    TokenStream,
)

MLC = "ai.mlc.mlcchat"


def request(max_tokens: int = 24) -> GenerationRequest:
    fields = {"document": "word " * 120, "request": "Summarize the given document."}
    return GenerationRequest(
        [Message("user", "Summarize: " + "word " * 60)], max_tokens, fields=fields
    )


def when_running(phone: AndroidDevice, name: str, then: str) -> threading.Thread:
    """Run the shell command ``then`` (``{pid}`` filled in) through adb as soon as ``name``
    runs on the phone."""

    def watch() -> None:
        adb = phone.require_adb()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = adb.run(["pidof", name]).stdout.split()
            if pids:
                adb.run(then.format(pid=pids[0]))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_ui_server_that_went_away_is_told_from_a_profile_mistake() -> None:
    gone = http.client.RemoteDisconnected("Remote end closed connection without response")
    assert server_gone(gone)
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise RuntimeError("HTTPConnectionPool: Max retries exceeded") from exc
    except RuntimeError as wrapped:
        assert server_gone(wrapped)  # what it was raised from says so
    assert not server_gone(ValueError("no such selector"))
    assert not server_gone(EngineError("{'text': 'Send'} did not appear within 10 s"))


def test_uids_of_proc_status_lines() -> None:
    text = (
        "/proc/1/status:Uid:\t0\t0\t0\t0\n"
        "/proc/10040/status:Uid:\t10201\t10201\t10201\t10201\n"
        "/proc/self/status:Uid:\t2000\t2000\t2000\t2000\n"
        "garbage\n"
    )
    assert parse_uids(text) == {1: 0, 10040: 10201}


def test_killed_llama_cli_is_a_device_fault_and_the_next_run_works(
    phone: AndroidDevice, cli_engine: LlamaCliEngine
) -> None:
    # What Android's low-memory killer does to a native process: SIGKILL.
    killer = when_running(phone, "llama-cli", "kill -9 {pid}")
    with pytest.raises(DeviceLostError, match="llama-cli killed by signal 9"):
        cli_engine.generate(request(), TokenStream(deadline=time.perf_counter() + 60))
    killer.join(timeout=5)
    result = cli_engine.generate(request(4), TokenStream(deadline=time.perf_counter() + 60))
    assert result.output_tokens >= 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (f"am force-stop {MLC}", "app killed"),  # the user, or the system, stops the app
        ("kill -9 {pid}", "app killed"),  # the low-memory killer takes its process
    ],
)
def test_app_killed_mid_answer_is_a_device_fault_and_the_app_comes_back(
    phone: AndroidDevice,
    fault: str,
    reason: str,
    app_engine: Callable[[str], AppEngine],
    on_first_token: Callable[[Callable[[], object]], TokenStream],
) -> None:
    engine = app_engine("mlcchat")
    killed: list[int] = []

    def kill() -> None:
        killed.append(phone.pids(MLC)[0])
        phone.require_adb().run(fault.format(pid=killed[0]))

    with pytest.raises(DeviceLostError, match=reason):
        engine.generate(request(), on_first_token(kill))
    assert killed and phone.pids(MLC) == []
    # The next attempt starts the app again and loads its model: it answers.
    result = engine.generate(request(4), TokenStream(deadline=time.perf_counter() + 60))
    assert result.output_tokens >= 1 and phone.pids(MLC)


def test_an_app_left_on_its_chat_by_an_earlier_run_is_loaded_again(
    phone: AndroidDevice, app_engine: Callable[[str], AppEngine]
) -> None:
    app_engine("mlcchat").close()  # the app stays on its chat screen, as after a run or a Ctrl-C
    assert phone.pids(MLC)
    again = app_engine("mlcchat")
    result = again.generate(request(4), TokenStream(deadline=time.perf_counter() + 60))
    assert result.output_tokens >= 1


def test_a_reboot_mid_answer_loses_the_ui_server_and_the_app_is_measured_after_it(
    phone: AndroidDevice,
    app_engine: Callable[[str], AppEngine],
    on_first_token: Callable[[Callable[[], object]], TokenStream],
) -> None:
    engine = app_engine("mlcchat")
    # As `adb reboot`: the link and the u2 server go down.
    reboot = phone.virtual.reboot  # type: ignore[attr-defined]
    with pytest.raises(DeviceLostError):
        engine.generate(request(64), on_first_token(reboot))
    phone.reconnect(30)  # what the scheduler does before the retry
    result = engine.generate(request(4), TokenStream(deadline=time.perf_counter() + 60))
    assert result.output_tokens >= 1


def test_an_apps_engine_is_every_process_of_its_uid(
    phone: AndroidDevice, app_engine: Callable[[str], AppEngine]
) -> None:
    vdev = phone.virtual  # type: ignore[attr-defined]
    engine = app_engine("mlcchat")
    [main] = phone.pids(MLC)
    # Android runs some apps in several processes, all under the app's UID.
    remote = vdev.register_process(f"{MLC}:remote")
    owned = phone.app_pids(MLC)
    assert owned == sorted([main, remote])
    # The launcher and the system UI are apps too, with UIDs of their own.
    for other in ("com.android.systemui", "com.sec.android.app.launcher"):
        assert not set(phone.pids(other)) & set(owned)
    engine.generate(request(4), TokenStream(deadline=time.perf_counter() + 60))
    assert phone.telemetry is not None and set(phone.telemetry.pids) == {main, remote}
