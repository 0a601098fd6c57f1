"""Android phones over ADB: discovery, fingerprint, telemetry, reconnect."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import devicelab
from devicelab import Collector, Device, DeviceInfo, DeviceType, ScenarioError

from .adb import Adb, client
from .telemetry import StreamingCollector, consumers_script, parse_consumers, parse_uids

OPTIONS = {"serial", "telemetry_interval_s"}


def _attached() -> list[tuple[str, str]]:
    """(serial, model) of every phone the adb server sees as ready."""
    c = client()
    out = []
    for info in c.list():
        if info.state == "device":
            model = ""
            # A phone that just went away is listed without a model.
            with contextlib.suppress(Exception):
                model = str(c.device(info.serial).prop.model)
            out.append((info.serial, model))
    return out


def fingerprint(adb: Adb) -> dict[str, Any]:
    props = adb.getprops()
    mem_kb = 0
    for line in adb.check(["cat", "/proc/meminfo"]).splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "kind": "android",
        "serial": adb.serial,
        "manufacturer": props.get("ro.product.manufacturer", ""),
        "model": props.get("ro.product.model", ""),
        "device": props.get("ro.product.device", ""),
        "platform": props.get("ro.board.platform", ""),
        "soc": props.get("ro.soc.model", "") or props.get("ro.hardware", ""),
        "android": props.get("ro.build.version.release", ""),
        "sdk": props.get("ro.build.version.sdk", ""),
        "build": props.get("ro.build.fingerprint", ""),
        "abi": props.get("ro.product.cpu.abi", ""),
        "ram_mb": round(mem_kb / 1024),
    }


class AndroidDevice(Device):
    kind = "android"

    def __init__(
        self, name: str, serial: str, profile: Mapping[str, Any], registry: devicelab.Registry
    ) -> None:
        super().__init__(name, profile.get("options", {}))
        # The app engine finds its host tokenizer's model here.
        self.registry = registry
        self.serial = serial
        self.profile = dict(profile)
        self.adb: Adb | None = None
        self.telemetry: StreamingCollector | None = None
        self._info: dict[str, Any] | None = None

    def open(self) -> None:
        self.adb = Adb(self.serial)
        if self.adb.state() != "device":
            raise devicelab.DeviceLostError(f"{self.serial} is not ready (adb devices -l)")
        interval = float(self.options.get("telemetry_interval_s", 0.04))
        self.telemetry = StreamingCollector(self.adb, interval)

    def require_adb(self) -> Adb:
        if self.adb is None:
            raise devicelab.DevicelabError("the Android device is not open")
        return self.adb

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = fingerprint(self.require_adb())
            self._info["profile"] = self.profile.get("name", "")
        return self._info

    def collectors(self) -> list[Collector]:
        return [self.telemetry] if self.telemetry is not None else []

    def watch(self, pids: list[int], package: str | None = None) -> None:
        if self.telemetry is not None:
            self.telemetry.watch(pids, package)

    def cpu_consumers(self, seconds: float) -> list[tuple[str, float]]:
        # One adb command reads every process's /proc/PID/stat twice, `seconds` apart.
        text = self.require_adb().run(consumers_script(seconds), timeout=seconds + 20).stdout
        engine = self.telemetry.pids if self.telemetry is not None else ()
        return parse_consumers(text, engine)

    def pids(self, name: str) -> list[int]:
        out = self.require_adb().run(["pidof", name], timeout=10).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def app_pids(self, package: str) -> list[int]:
        """Every process of ``package``'s UID: an app's engine is its package, which Android
        may run in several processes (``PKG``, ``PKG:remote``, ...). Empty when it is not
        running."""
        main = self.pids(package)
        if not main:
            return []
        text = (
            self.require_adb()
            .run("grep -H '^Uid:' /proc/[0-9]*/status 2>/dev/null", timeout=10)
            .stdout
        )
        uids = parse_uids(text)
        owned = {uids[p] for p in main if p in uids}
        return sorted({*main, *(p for p, uid in uids.items() if uid in owned)})

    def reconnect(self, timeout_s: float) -> None:
        self.require_adb().reconnect(timeout_s)

    def close(self) -> None:
        if self.telemetry is not None:
            self.telemetry.stop()


class AndroidType(DeviceType):
    kind = "android"
    description = "Android phones over ADB (USB or adb over Wi-Fi)"

    def __init__(self, registry: devicelab.Registry) -> None:
        self.registry = registry

    def discover(self) -> list[DeviceInfo]:
        try:
            attached = _attached()
        except devicelab.UsageError:
            return []
        found = []
        for serial, _ in attached:
            adb = Adb(serial)
            info = fingerprint(adb)
            desc = (
                f"{info['manufacturer']} {info['model']}, Android {info['android']} "
                f"({info['platform']}), {info['ram_mb']} MB RAM"
            )
            found.append(DeviceInfo(serial, self.kind, desc, info))
        return found

    def accepts(self, name: str) -> bool:
        try:
            return any(serial == name for serial, _ in _attached())
        except devicelab.UsageError:
            return False

    def resolve_serial(self, name: str, profile: Mapping[str, Any]) -> str:
        options = profile.get("options", {})
        if options.get("serial"):
            return str(options["serial"])
        attached = _attached()
        if any(serial == name for serial, _ in attached):
            return name
        models = list(profile.get("match", {}).get("models", []))
        matching = [s for s, m in attached if not models or m in models]
        if len(matching) == 1:
            return matching[0]
        seen = ", ".join(f"{s} ({m})" for s, m in attached) or "none"
        if not matching:
            want = f"a phone of model {', '.join(models)}" if models else "a phone"
            raise ScenarioError(
                f"device {name!r} needs {want}, but the adb server sees: {seen}. Attach it "
                "(USB debugging on), or `adb connect HOST:PORT` for adb over Wi-Fi, then "
                "check with `devicelab devices`."
            )
        raise ScenarioError(
            f"device {name!r} matches several phones ({seen}). Pick one with "
            '[device] options = { serial = "..." } or --device SERIAL.'
        )

    def check(self, name: str, profile: Mapping[str, Any]) -> None:
        unknown = set(profile.get("options", {})) - OPTIONS
        if unknown:
            raise ScenarioError(
                f"unknown Android device option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(OPTIONS))}."
            )
        self.resolve_serial(name, profile)

    def open(self, name: str, profile: Mapping[str, Any]) -> Device:
        return AndroidDevice(name, self.resolve_serial(name, profile), profile, self.registry)
