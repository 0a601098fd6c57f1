"""Package management through the real adb binary and adbutils: `adb install` of the real APK
uiautomator2 ships (adb 36's streamed install over `exec:cmd package install -S`), the push +
`pm install` path, `adb uninstall`, `pm`/`cmd package`/`dumpsys package`, `am start` of the
installed app, and the phone's errors for a broken APK."""

from __future__ import annotations

import zipfile
from pathlib import Path

import adbutils
import uiautomator2
from virtual_android.apps.apps import DOCASSIST_PACKAGE, MLCCHAT_PACKAGE
from virtual_android.device import VirtualS24
from virtual_android.pytest_plugin import AdbRunner

U2_APK = Path(uiautomator2.__file__).parent / "assets" / "app-uiautomator.apk"
U2_PACKAGE = "com.github.uiautomator"


def test_adb_install_streams_the_real_apk_and_registers_it(
    adb: AdbRunner, phone: VirtualS24, dev: adbutils.AdbDevice
) -> None:
    assert U2_PACKAGE not in dev.list_packages()
    done = adb("-s", phone.serial, "install", str(U2_APK), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Performing Streamed Install", "Success"]

    assert U2_PACKAGE in dev.list_packages(["-3"])
    path = dev.shell(["pm", "path", U2_PACKAGE])
    assert path.startswith("package:/data/app/~~") and path.endswith("/base.apk")
    assert dev.sync.read_bytes(path[len("package:") :]) == U2_APK.read_bytes()

    dump = dev.shell(["dumpsys", "package", U2_PACKAGE])
    assert f"Package [{U2_PACKAGE}]" in dump
    assert "versionCode=2004001 minSdk=19 targetSdk=32" in dump
    assert "versionName=2.4.0" in dump
    assert f"{U2_PACKAGE}/.MainActivity" in dump
    assert "android.permission.INTERNET" in dump.split("requested permissions:")[1]
    info = dev.app_info(U2_PACKAGE)
    assert info is not None
    assert (info.version_name, info.version_code) == ("2.4.0", 2004001)
    assert dev.shell(["cmd", "package", "list", "packages", U2_PACKAGE]) == (
        f"package:{U2_PACKAGE}"
    )


def test_the_installed_app_starts_and_stops_then_uninstalls(
    adb: AdbRunner, phone: VirtualS24, dev: adbutils.AdbDevice
) -> None:
    assert adb("-s", phone.serial, "install", str(U2_APK), timeout=60).returncode == 0
    started = dev.shell2(["am", "start", "-W", "-n", f"{U2_PACKAGE}/.MainActivity"])
    assert started.returncode == 0, started.output
    assert "LaunchState: COLD" in started.output
    assert dev.app_current().package == U2_PACKAGE
    assert dev.shell(["pidof", U2_PACKAGE]).isdigit()
    dev.app_stop(U2_PACKAGE)
    assert dev.shell(["pidof", U2_PACKAGE]) == ""

    done = adb("-s", phone.serial, "uninstall", U2_PACKAGE, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "Success")
    assert U2_PACKAGE not in dev.list_packages()
    assert dev.shell2(["pm", "path", U2_PACKAGE]).returncode == 1
    failed = dev.shell2(["am", "start", "-n", f"{U2_PACKAGE}/.MainActivity"])
    assert failed.returncode != 0 and "does not exist" in failed.output
    again = adb("-s", phone.serial, "uninstall", U2_PACKAGE, timeout=60)
    assert again.returncode == 1
    assert "Failure [DELETE_FAILED_INTERNAL_ERROR]" in again.stdout + again.stderr


def test_adbutils_install_pushes_then_runs_pm_install(dev: adbutils.AdbDevice) -> None:
    dev.install(str(U2_APK), nolaunch=True, silent=True)
    assert U2_PACKAGE in dev.list_packages()
    assert not dev.sync.exists(f"/data/local/tmp/{U2_PACKAGE}.apk")  # pm install cleaned it
    assert dev.uninstall(U2_PACKAGE).strip() == "Success"


def test_a_broken_apk_gets_the_phones_error(
    adb: AdbRunner, phone: VirtualS24, dev: adbutils.AdbDevice, tmp_path: Path
) -> None:
    text = tmp_path / "notes.apk"
    text.write_text("this is not a zip file\n")
    done = adb("-s", phone.serial, "install", str(text), timeout=60)
    assert done.returncode == 1
    assert "adb: failed to install" in done.stderr
    assert "Failure [INSTALL_PARSE_FAILED_NOT_APK: Failed to parse /data/app/vmdl" in done.stderr
    assert "Failed to load asset path" in done.stderr

    no_manifest = tmp_path / "empty.apk"
    with zipfile.ZipFile(no_manifest, "w") as apk:
        apk.writestr("classes.dex", b"dex\n035\x00")
    dev.sync.push(no_manifest, "/data/local/tmp/empty.apk")
    out = dev.shell2(["pm", "install", "/data/local/tmp/empty.apk"])
    assert out.returncode == 1 and "INSTALL_PARSE_FAILED_NOT_APK" in out.output
    missing = dev.shell2(["pm", "install", "/data/local/tmp/missing.apk"])
    assert missing.returncode == 1 and "Can't open file" in missing.output
    assert U2_PACKAGE not in dev.list_packages()


def test_reinstalling_replaces_the_package_and_keeps_its_first_install_time(
    dev: adbutils.AdbDevice,
) -> None:
    dev.sync.push(U2_APK, "/data/local/tmp/u2.apk")
    assert dev.shell(["pm", "install", "/data/local/tmp/u2.apk"]) == "Success"
    first = dev.app_info(U2_PACKAGE)
    # Replacing is the default on Android 14 (-r is accepted and changes nothing).
    assert dev.shell(["pm", "install", "-r", "/data/local/tmp/u2.apk"]) == "Success"
    again = dev.app_info(U2_PACKAGE)
    assert first is not None and again is not None
    assert again.first_install_time == first.first_install_time
    assert dev.list_packages().count(U2_PACKAGE) == 1


def test_pm_lists_system_and_built_in_packages(dev: adbutils.AdbDevice) -> None:
    third = dev.list_packages(["-3"])
    assert third == sorted([DOCASSIST_PACKAGE, MLCCHAT_PACKAGE])
    system = dev.list_packages(["-s"])
    assert "android" in system and DOCASSIST_PACKAGE not in system
    with_paths = dev.shell(["pm", "list", "packages", "-f", "-3"]).splitlines()
    ends = ("=" + DOCASSIST_PACKAGE, "=" + MLCCHAT_PACKAGE)
    assert len(with_paths) == 2 and all(line.endswith(ends) for line in with_paths)
    assert dev.shell(["dumpsys", "package", "no.such.app"]) == "Unable to find package: no.such.app"
    dump = dev.shell(["dumpsys", "package", DOCASSIST_PACKAGE])
    assert "versionCode=1 minSdk=26 targetSdk=34" in dump and "versionName=1.0" in dump


def test_adb_install_multiple_uses_an_install_session(
    adb: AdbRunner, phone: VirtualS24, dev: adbutils.AdbDevice
) -> None:
    done = adb("-s", phone.serial, "install-multiple", str(U2_APK), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("Success")
    assert U2_PACKAGE in dev.list_packages()
    assert "versionName=2.4.0" in dev.shell(["dumpsys", "package", U2_PACKAGE])
