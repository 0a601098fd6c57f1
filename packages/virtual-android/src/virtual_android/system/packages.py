"""The package manager: installed packages, APK installs, `pm`, `cmd package`, `dumpsys package`.

An APK is read as a phone reads it: its binary AndroidManifest.xml is decoded (apkInspector,
a maintained pure-Python AXML parser) for the package name, versionCode/versionName,
min/target SDK, activities (and the launcher one) and requested permissions. The APK is kept
at its /data/app/~~X==/PKG-Y==/base.apk path (so `pm path` then `adb pull` gets it back).
Installs come the two ways adb 36 uses: `cmd package install -S SIZE` streaming the APK on
stdin (adb's default when the device advertises `cmd`), and `pm install PATH` after a push
(`adb install --no-streaming`, adbutils' `install`). Failures print what a phone prints.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import VirtualAndroidError
from .service import SystemService

if TYPE_CHECKING:
    from ..fs.filesystem import VirtualFS
    from ..shell.interpreter import CommandContext
    from .logd import LogBuffer

__all__ = [
    "SYSTEM_PACKAGES",
    "InstallError",
    "Package",
    "PackageManager",
    "dump_package",
    "int_or",
    "parse_apk",
]

SDK_INT = 34
_ANDROID = "{http://schemas.android.com/apk/res/android}"
MAIN_ACTION = "android.intent.action.MAIN"
LAUNCHER_CATEGORY = "android.intent.category.LAUNCHER"

# What `pm list packages -s` shows of the S24's own software (a real one has ~400).
SYSTEM_PACKAGES = (
    "android",
    "com.android.systemui",
    "com.android.phone",
    "com.android.settings",
    "com.android.shell",
    "com.android.chrome",
    "com.android.vending",
    "com.google.android.gms",
    "com.samsung.android.honeyboard",
    "com.samsung.android.messaging",
    "com.sec.android.app.camera",
    "com.sec.android.app.launcher",
    "com.sec.android.app.sbrowser",
)
BROWSER_PACKAGE = "com.sec.android.app.sbrowser"
BROWSER_ACTIVITY = "com.sec.android.app.sbrowser.SBrowserMainActivity"
LAUNCHER_PACKAGE = "com.sec.android.app.launcher"
LAUNCHER_ACTIVITY = "com.sec.android.app.launcher.activities.LauncherActivity"


class InstallError(VirtualAndroidError):
    """An install the phone refuses: `code` is the INSTALL_FAILED_*/INSTALL_PARSE_* constant."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def failure(self) -> str:
        return f"Failure [{self.code}: {self.detail}]"


@dataclass
class Package:
    name: str
    version_code: int = 1
    version_name: str = "1.0"
    min_sdk: int = 26
    target_sdk: int = SDK_INT
    activities: tuple[str, ...] = ()  # full class names
    launcher_activity: str = ""  # full class name, "" when none
    permissions: tuple[str, ...] = ()
    system: bool = False
    debuggable: bool = False
    label: str = ""
    app_id: int = 10_201
    code_path: str = ""
    first_install: float = field(default_factory=time.time)
    last_update: float = field(default_factory=time.time)

    @property
    def apk_path(self) -> str:
        if self.system:
            return f"{self.code_path}/{self.code_path.rsplit('/', 1)[-1]}.apk"
        return f"{self.code_path}/base.apk"

    def short(self, activity: str) -> str:
        """`pkg.Main` -> `.Main` (how am and dumpsys name a package's own activities)."""
        return activity[len(self.name) :] if activity.startswith(self.name + ".") else activity

    def full(self, activity: str) -> str:
        """`.Main` -> `pkg.Main`; a bare `Main` -> `pkg.Main`; full names stay."""
        if activity.startswith("."):
            return self.name + activity
        return activity if "." in activity else f"{self.name}.{activity}"

    def has_activity(self, activity: str) -> bool:
        return self.full(activity) in self.activities


def parse_apk(data: bytes, where: str) -> Package:
    """The package an APK declares; InstallError(INSTALL_PARSE_FAILED_NOT_APK) when unreadable.

    ``where`` is the path the phone names in its error (its staging base.apk).
    """
    from apkInspector.axml import get_manifest
    from apkInspector.extract import extract_file_based_on_header_info
    from apkInspector.headers import ZipEntry

    not_apk = InstallError(
        "INSTALL_PARSE_FAILED_NOT_APK",
        f"Failed to parse {where}: Failed to load asset path {where}",
    )
    try:
        entry = ZipEntry.parse_single(io.BytesIO(data), "AndroidManifest.xml")
        local = entry.local_headers["AndroidManifest.xml"].to_dict()
        central = entry.central_directory.entries["AndroidManifest.xml"].to_dict()
        raw = extract_file_based_on_header_info(io.BytesIO(data), local, central)[0]
        root = ET.fromstring(get_manifest(io.BytesIO(raw)))
    except Exception:  # any malformed zip or manifest is "not an APK" to the phone
        raise not_apk from None
    name = root.get("package", "")
    if root.tag != "manifest" or not name:
        raise InstallError(
            "INSTALL_PARSE_FAILED_MANIFEST_MALFORMED",
            f"Failed parse during installPackageLI: {where} (at Binary XML file line #1): "
            "<manifest> has no package name",
        )
    sdk = root.find("uses-sdk")
    min_sdk = int_or(sdk.get(_ANDROID + "minSdkVersion") if sdk is not None else None, 1)
    target = int_or(sdk.get(_ANDROID + "targetSdkVersion") if sdk is not None else None, min_sdk)
    app = root.find("application")
    activities: list[str] = []
    launcher = ""
    for node in [] if app is None else [*app.iter("activity"), *app.iter("activity-alias")]:
        activity = node.get(_ANDROID + "name", "")
        if not activity:
            continue
        full = name + activity if activity.startswith(".") else activity
        activities.append(full)
        for intent_filter in node.iter("intent-filter"):
            actions = {a.get(_ANDROID + "name") for a in intent_filter.iter("action")}
            categories = {c.get(_ANDROID + "name") for c in intent_filter.iter("category")}
            if not launcher and MAIN_ACTION in actions and LAUNCHER_CATEGORY in categories:
                launcher = full
    label = app.get(_ANDROID + "label", "") if app is not None else ""
    return Package(
        name=name,
        version_code=int_or(root.get(_ANDROID + "versionCode"), 1),
        version_name=root.get(_ANDROID + "versionName") or "null",
        min_sdk=min_sdk,
        target_sdk=target,
        activities=tuple(activities),
        launcher_activity=launcher,
        permissions=tuple(
            p.get(_ANDROID + "name", "")
            for p in root.iter("uses-permission")
            if p.get(_ANDROID + "name")
        ),
        debuggable=app is not None and app.get(_ANDROID + "debuggable") == "true",
        label="" if label.startswith("@") else label,
    )


def int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _apk_dir(package: str) -> str:
    digest = hashlib.sha256(package.encode()).hexdigest()
    return f"/data/app/~~{digest[:22]}==/{package}-{digest[22:44]}=="


Listener = Callable[[str, Package], None]


class PackageManager(SystemService):
    """The packages of one phone (system, the built-in apps, and installed APKs)."""

    name = "package"
    tool = "pm"  # system/pm.py

    def __init__(self, fs: VirtualFS, logs: LogBuffer) -> None:
        self._fs = fs
        self._logs = logs
        self._lock = threading.RLock()
        self._packages: dict[str, Package] = {}
        self._listeners: list[Listener] = []
        self._next_app_id = 10_240
        self._sessions: dict[int, dict[str, bytes]] = {}  # install-create sessions: splits
        for name in SYSTEM_PACKAGES:
            activities = (BROWSER_ACTIVITY,) if name == BROWSER_PACKAGE else ()
            self._packages[name] = Package(
                name,
                version_code=34,
                version_name="14",
                min_sdk=SDK_INT,
                system=True,
                activities=activities,
                app_id=1000,
                code_path=f"/system/priv-app/{name}",
                first_install=1_230_768_000.0,  # 2009-01-01: how system apps show
                last_update=1_230_768_000.0,
            )

    def on_change(self, listener: Listener) -> None:
        """``listener(event, package)`` after each install or replace ("installed"), uninstall
        ("removed") and `pm clear` ("cleared")."""
        with self._lock:
            self._listeners.append(listener)

    def get(self, name: str) -> Package | None:
        with self._lock:
            return self._packages.get(name)

    def all(self) -> list[Package]:
        with self._lock:
            return sorted(self._packages.values(), key=lambda p: p.name)

    def register(self, package: Package) -> None:
        """Add an app that ships with the phone image (the built-in apps)."""
        with self._lock:
            if not package.code_path:
                package.code_path = _apk_dir(package.name)
            if package.app_id == Package.app_id:
                package.app_id = self._allocate_app_id()
            self._packages[package.name] = package

    def _allocate_app_id(self) -> int:
        app_id = self._next_app_id
        self._next_app_id += 1
        return app_id

    def install(self, data: bytes, flags: set[str] | frozenset[str] = frozenset()) -> Package:
        """Install an APK's bytes (as PackageManagerService does); raises InstallError."""
        staging = f"/data/app/vmdl{random.randint(100_000_000, 2_000_000_000)}.tmp/base.apk"
        package = parse_apk(data, staging)
        if package.min_sdk > SDK_INT:
            raise InstallError(
                "INSTALL_FAILED_OLDER_SDK",
                f"Failed parse during installPackageLI: {staging} (at Binary XML file line #7): "
                f"Requires newer sdk version #{package.min_sdk} (current version is #{SDK_INT})",
            )
        with self._lock:
            old = self._packages.get(package.name)
            if old is not None and old.system:
                raise InstallError(
                    "INSTALL_FAILED_UPDATE_INCOMPATIBLE",
                    f"Existing package {package.name} signatures do not match newer version; "
                    "ignoring!",
                )
            if old is not None and package.version_code < old.version_code and "-d" not in flags:
                raise InstallError(
                    "INSTALL_FAILED_VERSION_DOWNGRADE",
                    f"Downgrade detected: Update version code {package.version_code} is older "
                    f"than current {old.version_code}",
                )
            package.code_path = _apk_dir(package.name)
            package.app_id = old.app_id if old is not None else self._allocate_app_id()
            if old is not None:
                package.first_install = old.first_install
            fs = self._fs
            fs.add_dir(package.code_path)
            fs.add_file(package.apk_path, data)
            fs.add_dir(f"/data/data/{package.name}", mode=0o700, uid=package.app_id)
            self._packages[package.name] = package
            listeners = list(self._listeners)
        self._logs.write(
            "PackageManager",
            f"Package {package.name} codePath changed from null to {package.code_path}; "
            f"Retaining data and using new",
            pid=1450,
            buffer="main",
        )
        for listener in listeners:
            listener("installed", package)
        return package

    def uninstall(self, name: str) -> bool:
        """Remove an installed (non-system) package; False when there is none to remove."""
        with self._lock:
            package = self._packages.get(name)
            if package is None or package.system:
                return False
            del self._packages[name]
            listeners = list(self._listeners)
        for listener in listeners:
            listener("removed", package)
        self._fs.drop(package.code_path.rsplit("/", 1)[0])
        self._fs.drop(f"/data/data/{name}")
        self._logs.write("PackageManager", f"Removing package {name}", pid=1450, buffer="main")
        return True

    # -- install sessions (adb install-multiple) ---------------------------------
    def create_session(self) -> int:
        with self._lock:
            session = random.randint(100_000_000, 2_000_000_000)
            self._sessions[session] = {}
            return session

    def write_session(self, session: int, name: str, data: bytes) -> bool:
        with self._lock:
            splits = self._sessions.get(session)
            if splits is None:
                return False
            splits[name] = data
            return True

    def commit_session(self, session: int, flags: set[str] | frozenset[str]) -> Package:
        """Install a session's APKs: the one that is not a split (no `split=`) is the base."""
        with self._lock:
            splits = self._sessions.pop(session, None)
        if not splits:
            raise InstallError("INSTALL_FAILED_INVALID_APK", "No packages staged")
        # A split's manifest names its split; this phone installs the base and keeps the rest.
        base = next(iter(splits.values()))
        return self.install(base, flags)

    def abandon_session(self, session: int) -> bool:
        with self._lock:
            return self._sessions.pop(session, None) is not None

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        """`dumpsys package [OPTIONS] NAME`."""
        names = [a for a in args if not a.startswith("-")]
        if names:
            dump_package(ctx, self, names[-1])
        return 0

    def clear_data(self, name: str) -> bool:
        """`pm clear`: the app is stopped and its data goes; False for an unknown package."""
        with self._lock:
            package = self._packages.get(name)
            listeners = list(self._listeners)
        if package is None:
            return False
        for listener in listeners:
            listener("cleared", package)
        return True


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def dump_package(ctx: CommandContext, manager: PackageManager, name: str) -> None:
    """`dumpsys package NAME` in Android 14's layout (the parts tools parse)."""
    package = manager.get(name)
    if package is None:
        ctx.write(f"Unable to find package: {name}\n")
        return
    digest = hashlib.sha256(name.encode()).hexdigest()
    lines = ["Activity Resolver Table:", "  Non-Data Actions:"]
    if package.launcher_activity:
        lines += [
            f"      {MAIN_ACTION}:",
            f"        {digest[40:47]} {name}/{package.short(package.launcher_activity)} filter "
            f"{digest[47:54]}",
            f'          Action: "{MAIN_ACTION}"',
            f'          Category: "{LAUNCHER_CATEGORY}"',
        ]
    flags = ["DEBUGGABLE"] if package.debuggable else []
    flags += ["SYSTEM"] if package.system else []
    flags += ["HAS_CODE", "ALLOW_CLEAR_USER_DATA", "ALLOW_BACKUP"]
    flag_text = "[ " + " ".join(flags) + " ]"
    lines += [
        "",
        "Packages:",
        f"  Package [{name}] ({digest[:7]}):",
        f"    appId={package.app_id}",
        f"    pkg=Package{{{digest[7:14]} {name}}}",
        f"    codePath={package.code_path}",
        f"    resourcePath={package.code_path}",
        f"    legacyNativeLibraryDir={package.code_path}/lib",
        "    extractNativeLibs=false",
        "    primaryCpuAbi=arm64-v8a",
        "    secondaryCpuAbi=null",
        "    cpuAbiOverride=null",
        f"    versionCode={package.version_code} minSdk={package.min_sdk} "
        f"targetSdk={package.target_sdk}",
        "    minExtensionVersions=[]",
        f"    versionName={package.version_name}",
        "    usesNonSdkApi=false",
        "    splits=[base]",
        "    apkSigningVersion=2",
        f"    flags={flag_text}",
        f"    dataDir=/data/user/0/{name}",
        "    supportsScreens=[small, medium, large, xlarge, resizeable, anyDensity]",
        f"    timeStamp={_when(package.last_update)}",
        f"    lastUpdateTime={_when(package.last_update)}",
        "    installerPackageName=null",
        f"    signatures=PackageSignatures{{{digest[14:21]} version:2, "
        f"signatures:[{digest[21:29]}], past signatures:[]}}",
        "    installPermissionsFixed=true",
        f"    pkgFlags={flag_text}",
    ]
    if package.activities:
        lines.append("    activities:")
        lines += [f"      {name}/{package.short(a)}" for a in package.activities]
    if package.permissions:
        lines.append("    requested permissions:")
        lines += [f"      {p}" for p in package.permissions]
        lines.append("    install permissions:")
        lines += [f"      {p}: granted=true" for p in package.permissions]
    lines += [
        "    User 0: ceDataInode=0 installed=true hidden=false suspended=false "
        "distractionFlags=0 stopped=false notLaunched=false enabled=0 instant=false virtual=false",
        f"      firstInstallTime={_when(package.first_install)}",
        "      uninstallReason=0",
        "      gids=[3003]",
        "      runtime permissions:",
    ]
    ctx.write("\n".join(lines) + "\n")
