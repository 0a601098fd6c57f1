"""On-device telemetry: one persistent adb shell stream against one adb command per sample.

    python bench/android_telemetry.py [--seconds 5]

Starts a virtual S24 on a private adb server (the real adb binary), then samples the same
files both ways through the Android plugin and prints the rates. Goal: the stream at least
20 Hz and at least 10 times the one-command-per-sample rate. On a real phone each adb command
costs more than here (USB or Wi-Fi latency, a real fork and exec), so the ratio only grows.
"""

from __future__ import annotations

import argparse
import os
import subprocess

import adbutils
from devicelab_android.adb import Adb
from devicelab_android.telemetry import measure_rates
from devicelab_virtual.launch import register_with_adb
from virtual_android import free_port
from virtual_android.device import VirtualS24


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    port = free_port()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    adb_bin = adbutils.adb_path()
    subprocess.run([adb_bin, "-P", str(port), "start-server"], check=True, capture_output=True)
    phone = VirtualS24()
    phone.start()
    try:
        register_with_adb(phone.serial)
        rates = measure_rates(Adb(phone.serial), seconds=args.seconds)
    finally:
        phone.stop()
        subprocess.run([adb_bin, "-P", str(port), "kill-server"], capture_output=True)
    stream, single = rates["stream_hz"], rates["per_command_hz"]
    print(f"one persistent stream: {stream:7.1f} samples/s")
    print(f"one command a sample:  {single:7.1f} samples/s")
    print(f"ratio: {stream / single:.1f}x (goal >= 10x, stream >= 20 Hz)")


if __name__ == "__main__":
    main()
