"""llama.cpp for the phone, without the NDK: a static arm64 build from the installed sources.

The host engine runs llama.cpp from llama-cpp-python; the sdist of that very version vendors
llama.cpp's sources (:mod:`.hostcli` builds host tools from them). Cross-compiled here with
Debian's ``g++-aarch64-linux-gnu`` and linked statically, the completion tool needs no
Android libc or loader: the one ELF file runs from ``adb shell`` on a phone, and under
``qemu-aarch64-static`` on the virtual S24, so host, phone and virtual phone run the same
llama.cpp commit.

The target comes from the device profile's ``[device.facts] arm_arch`` (the S24's cores are
Armv9.2-A with dotprod, i8mm and fp16); a phone without one gets the generic
:data:`GENERIC_ARCH`. An Armv9 core is built for as Armv8.6-A with the same extensions
(:func:`build_arch`): Armv9 makes SVE2 part of the base, and with it on ggml takes its SVE
kernels, written for 256-bit and wider vectors, where the S24's cores have 128-bit ones and
NEON with i8mm is the fast path (llama.cpp's own Android builds target Armv8.x the same way);
qemu, which runs the binary on the virtual S24, also emulates SVE several times slower than
NEON (measured here: 0.9 tokens/s against 5.5). A compiler that does not know the
architecture gets the nearest older one it knows, and the record says what was built.

Flags: ``GGML_NATIVE=OFF`` (the build host is not the phone), ``GGML_CPU_ARM_ARCH`` (the
target), ``GGML_OPENMP=OFF`` (ggml's own threads: no OpenMP runtime to link statically) and
``-static``. Cached under devicelab's cache directory by (llama-cpp-python version, llama.cpp
commit, target, flags): ``devicelab android build-llama`` builds it once and prints its path.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import devicelab
from devicelab import cache_dir

from . import hostcli

CROSS_CC = "aarch64-linux-gnu-gcc"
CROSS_CXX = "aarch64-linux-gnu-g++"
CROSS_FIX = "sudo apt-get install g++-aarch64-linux-gnu (Debian/Ubuntu)"
QEMU_FIX = "sudo apt-get install qemu-user-static"
GENERIC_ARCH = "armv8.2-a+dotprod+fp16"
# The completion tool's cmake target in trees since llama.cpp split its CLI (see .hostcli).
TARGET = "llama-completion"

TOOLCHAIN = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER {cc})
set(CMAKE_CXX_COMPILER {cxx})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
"""


class CrossBuildError(devicelab.UsageError):
    """The arm64 build could not be made; the message names what to install or fix."""


def profile_arch(profile: Mapping[str, Any]) -> str:
    """The ``-march`` a device profile asks for (its ``[device.facts] arm_arch``), else the
    generic Armv8.2-A with dotprod and fp16 that every phone of the last years runs."""
    facts = profile.get("facts", {})
    arch = facts.get("arm_arch") if isinstance(facts, Mapping) else None
    return str(arch) if arch else GENERIC_ARCH


def read_profile(value: str) -> dict[str, Any]:
    """The ``[device]`` table of a profile: a path, or a name looked up in ./devices/."""
    path = Path(value) if value.endswith(".toml") else Path("devices") / f"{value}.toml"
    try:
        data = devicelab.read_toml(path)
    except OSError:
        raise devicelab.UsageError(
            f"no device profile {path}. Give a profile name from ./devices/ (s24) or a path."
        ) from None
    except devicelab.TOMLDecodeError as exc:
        raise devicelab.UsageError(f"{path}: not valid TOML: {exc}. Fix the syntax.") from None
    device = data.get("device", {})
    return dict(device) if isinstance(device, dict) else {}


def check_cross_tools() -> None:
    missing = [t for t in (CROSS_CC, CROSS_CXX) if shutil.which(t) is None]
    if missing:
        raise devicelab.MissingDependencyError(
            f"building llama.cpp for arm64 needs the cross compiler ({', '.join(missing)} is "
            f"not on PATH): {CROSS_FIX}. Or build it with the Android NDK and give "
            '[models.options] binary = "path/to/llama-completion".'
        )
    if shutil.which("cmake") is None:
        raise devicelab.MissingDependencyError(
            f"building llama.cpp for arm64 needs cmake, which is not on PATH: {hostcli.CMAKE_FIX}."
        )


def build_arch(arch: str) -> str:
    """The ``-march`` to build for a core of ``arch``: an Armv9 one as Armv8.6-A with its
    extensions (no SVE; see the module's docstring), any other as given."""
    base, _, ext = arch.partition("+")
    if re.fullmatch(r"armv9(\.\d)?-a", base):
        return f"armv8.6-a+{ext}" if ext else "armv8.6-a"
    return arch


def accepted_arch(arch: str) -> str:
    """``arch`` if the cross compiler accepts it as ``-march``; else the same extensions on
    the newest base architecture it knows that is not newer than ``arch``'s."""
    if _compiles(arch):
        return arch
    base, _, ext = arch.partition("+")
    m = re.fullmatch(r"armv(\d)(?:\.(\d))?-a", base)
    if m is None:
        raise CrossBuildError(f"{CROSS_CC} does not accept -march={arch}; fix arm_arch.")
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    candidates = [(major, n) for n in range(minor - 1, -1, -1)]
    if major == 9:  # Armv9.0-A is a superset of Armv8.5-A
        candidates += [(8, n) for n in range(5, 1, -1)]
    for maj, n in candidates:
        name = f"armv{maj}-a" if n == 0 else f"armv{maj}.{n}-a"
        candidate = f"{name}+{ext}" if ext else name
        if _compiles(candidate):
            return candidate
    raise CrossBuildError(f"{CROSS_CC} accepts no -march near {arch}; fix arm_arch.")


def _compiles(arch: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int main(void) { return 0; }\n")
        done = subprocess.run(
            [CROSS_CC, f"-march={arch}", "-c", str(src), "-o", str(Path(tmp) / "t.o")],
            capture_output=True,
            check=False,
        )
    return done.returncode == 0


def cmake_flags(arch: str) -> list[str]:
    """The configure options of the arm64 build (after the toolchain file)."""
    return [
        "-DGGML_NATIVE=OFF",
        f"-DGGML_CPU_ARM_ARCH={arch}",
        "-DGGML_OPENMP=OFF",
        "-DCMAKE_EXE_LINKER_FLAGS=-static",
    ]


def build_dir(version: str, arch: str) -> Path:
    """Where one (version, target, flags) build is cached."""
    flags = json.dumps([TARGET, cmake_flags(build_arch(arch))])
    key = hashlib.sha256(flags.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", arch)
    return cache_dir() / "llama.cpp-arm64" / f"{hostcli.PACKAGE}-{version}" / f"{safe}-{key}"


def find_arm64(arch: str = GENERIC_ARCH, version: str | None = None) -> Path | None:
    """The cached arm64 build for ``arch`` (as asked; the record names what was built)."""
    version = version or hostcli.llama_cpp_version()
    out = build_dir(version, arch)
    info = read_info(out)
    if info is None:
        return None
    binary = out / str(info["binary"])
    return binary if binary.is_file() else None


def read_info(out: Path) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((out / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info


def build_info_of(binary: Path) -> dict[str, Any] | None:
    """What the build recorded (commit, target, flags, seconds, size) for a cached binary."""
    return read_info(binary.parent)


def build_arm64(
    arch: str = GENERIC_ARCH,
    progress: hostcli.Progress = print,
    version: str | None = None,
) -> Path:
    """The static arm64 ``llama-completion`` for ``arch``, built once (a few minutes)."""
    version = version or hostcli.llama_cpp_version()
    if (found := find_arm64(arch, version)) is not None:
        return found
    check_cross_tools()
    out = build_dir(version, arch)
    out.mkdir(parents=True, exist_ok=True)
    with hostcli._locked(out / ".lock"):
        if (found := find_arm64(arch, version)) is not None:
            return found
        built_arch = accepted_arch(build_arch(arch))
        if built_arch != arch:
            progress(f"building for -march={built_arch} (the device's cores: {arch})")
        flags = cmake_flags(built_arch)

        with tempfile.TemporaryDirectory() as spare:
            chain = Path(spare) / "aarch64.cmake"
            chain.write_text(TOOLCHAIN.format(cc=CROSS_CC, cxx=CROSS_CXX), encoding="utf-8")
            return hostcli._build(
                version,
                out,
                TARGET,
                progress,
                cmake_extra=[f"-DCMAKE_TOOLCHAIN_FILE={chain}", *flags],
                info_path=out / "build.json",
                extra_info={
                    "target": "aarch64-linux (static)",
                    "arch_asked": arch,
                    "arch": built_arch,
                    "flags": flags,
                    "compiler": _compiler_version(),
                },
            )


def _compiler_version() -> str:
    done = subprocess.run([CROSS_CXX, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else CROSS_CXX
