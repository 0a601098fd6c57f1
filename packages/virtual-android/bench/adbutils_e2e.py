"""Run adbutils' own device tests (the e2etests/ of its sdist) against a virtual S24.

    python packages/virtual-android/bench/adbutils_e2e.py [--e2e DIR] [--json OUT]

Without --e2e it fetches the sdist of the installed adbutils with pip (`pip download
adbutils==VERSION --no-deps --no-binary :all:`) into a temporary directory. It starts a private
adb server on a free port (never 5037), one phone (`make_phone`), connects it, and runs the
suite with pytest in a subprocess, pointed at that server by ANDROID_ADB_SERVER_PORT. The only
change made to the suite: test_adb.py builds its client on 127.0.0.1:5037 at import time, so
that port number is replaced by the private server's in the copy that runs.

It prints each test's outcome with the class of what it needs from a phone (CLASSES below),
the pass share overall and per class, and the first line of each failure, so the number can be
reproduced and each failure checked by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import adbutils
from virtual_android import free_port, make_phone, shutdown_phone

# What each test needs from the phone (module::test -> class). A test not listed is "other".
CLASSES: dict[str, str] = {
    "test_adb::test_server_version": "adb server only",
    "test_adb::test_adb_disconnect": "adb server only",
    "test_adb::test_wait_for": "needs a USB device",
    "test_adb::test_track_device": "adb server only",
    "test_import::test_import": "adb server only",
    "test_utils::test_stop_event": "adb server only",
    "test_utils::test_get_free_port": "adb server only",
    "test_utils::test_get_bin_dir": "adb server only",
    "test_device_base::test_shell": "shell",
    "test_device_base::test_shell_without_encoding": "shell",
    "test_device_base::test_shell_stream": "shell",
    "test_device_base::test_adb_shell_raise_timeout": "shell",
    "test_device_base::test_shell2": "shell",
    "test_device_base::test_get_xxx": "shell",
    "test_device_base::test_transport": "sync/forward",
    "test_device_base::test_framebuffer": "services (framebuffer, reverse)",
    "test_forward_reverse::test_forward": "sync/forward",
    "test_forward_reverse::test_reverse": "services (framebuffer, reverse)",
    "test_device_sync::test_pull_push_dirs": "sync/forward",
    "test_device_shell_extend::test_sync_pull_push": "sync/forward",
    "test_device_shell_extend::test_sync_pull_file_push": "sync/forward",
    "test_device_shell_extend::test_sync_push_to_dir": "sync/forward",
    "test_device_shell_extend::test_remove": "sync/forward",
    "test_device_shell_extend::test_battery": "system commands",
    "test_device_shell_extend::test_brightness": "system commands",
    "test_device_shell_extend::test_switch_airplane": "system commands",
    "test_device_shell_extend::test_switch_wifi": "system commands",
    "test_device_shell_extend::test_wlan_ip": "system commands",
    "test_device_shell_extend::test_logcat": "system commands",
    "test_deprecated::test_client_shell": "shell",
    "test_deprecated::test_package_info": "packages and activities",
    "test_device_shell_extend::test_app_info": "packages and activities",
    "test_device_shell_extend::test_app_start_stop": "packages and activities",
    "test_device_shell_extend::test_open_browser": "packages and activities",
    "test_device_shell_extend::test_keyevent": "UI (input, screen)",
    "test_device_shell_extend::test_switch_screen": "UI (input, screen)",
    "test_device_shell_extend::test_swipe": "UI (input, screen)",
    "test_device_shell_extend::test_drag": "UI (input, screen)",
    "test_device_shell_extend::test_click": "UI (input, screen)",
    "test_device_shell_extend::test_send_keys": "UI (input, screen)",
    "test_device_shell_extend::test_screenshot": "UI (input, screen)",
    "test_device_shell_extend::test_window_size": "UI (input, screen)",
    "test_device_shell_extend::test_is_screen_on": "UI (input, screen)",
    "test_device_shell_extend::test_dump_hierarchy": "UI (input, screen)",
    "test_record::test_screenrecord": "UI (input, screen)",
}


PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "-q")
SDIST_ONLY = ("--no-deps", "--no-binary", ":all:")
PYTEST = (
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "-o",
    "junit_family=xunit1",
)


def fetch_e2e(into: Path) -> Path:
    """The e2etests/ directory of the installed adbutils' sdist, downloaded with pip."""
    version = adbutils.__version__
    subprocess.run(
        [*PIP_DOWNLOAD, f"adbutils=={version}", *SDIST_ONLY, "-d", str(into)],
        check=True,
    )
    archive = next(into.glob("adbutils-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return next(into.glob("adbutils-*/e2etests"))


def run_suite(e2e: Path, work: Path, timeout: float) -> dict[str, tuple[str, str]]:
    """{module::test: (outcome, first line of the failure)} from one pytest run."""
    suite = work / "e2etests"
    shutil.copytree(e2e, suite)
    adb = adbutils.adb_path()
    port = free_port()
    test_adb = suite / "test_adb.py"
    if test_adb.exists():
        test_adb.write_text(test_adb.read_text().replace("5037", str(port)))
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, capture_output=True)
    phone = make_phone()
    phone.start()
    try:
        client = adbutils.AdbClient(host="127.0.0.1", port=port)
        client.connect(phone.serial, timeout=10)
        report = work / "report.xml"
        subprocess.run(
            [*PYTEST, str(suite), "--rootdir", str(suite), f"--junitxml={report}"],
            cwd=work,
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        return parse_junit(report)
    finally:
        shutdown_phone(phone)
        subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True)


def parse_junit(report: Path) -> dict[str, tuple[str, str]]:
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name', '')}"
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                detail = (node.get("message") or node.text or "").strip().splitlines()[0][:160]
                break
        results[name] = (outcome, detail)
    return results


def summarize(results: dict[str, tuple[str, str]]) -> dict[str, object]:
    per_class: dict[str, Counter[str]] = {}
    for name, (outcome, _detail) in results.items():
        per_class.setdefault(CLASSES.get(name, "other"), Counter())[outcome] += 1
    ran = [o for o, _ in results.values() if o != "skipped"]
    return {
        "passed": ran.count("passed"),
        "ran": len(ran),
        "skipped": len(results) - len(ran),
        "per_class": {k: dict(v) for k, v in sorted(per_class.items())},
        "tests": {k: {"outcome": o, "detail": d} for k, (o, d) in sorted(results.items())},
    }


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--e2e", type=Path, help="adbutils' e2etests/ (default: fetch the sdist)")
    args.add_argument("--json", type=Path, help="write the summary here as JSON")
    args.add_argument("--timeout", type=float, default=900.0, help="for the whole suite (s)")
    opts = args.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="adbutils-e2e-") as tmp:
        work = Path(tmp)
        e2e = opts.e2e or fetch_e2e(work / "sdist")
        summary = summarize(run_suite(e2e, work, opts.timeout))
    tests = summary["tests"]
    assert isinstance(tests, dict)
    for name, entry in tests.items():
        cls = CLASSES.get(name, "other")
        line = f"{entry['outcome']:<8} {name:<55} [{cls}]"
        print(line + (f"\n         {entry['detail']}" if entry["detail"] else ""))
    print(f"\npassed {summary['passed']} of {summary['ran']} run ({summary['skipped']} skipped)")
    per_class = summary["per_class"]
    assert isinstance(per_class, dict)
    for cls, counts in per_class.items():
        ran = sum(n for o, n in counts.items() if o != "skipped")
        print(f"  {cls:<36} {counts.get('passed', 0)}/{ran}")
    if opts.json:
        opts.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
