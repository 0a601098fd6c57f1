"""The real llama.cpp CLI, built for this host, so the Android engine's parser can be checked
against what llama.cpp really prints rather than against the virtual phone's imitation.

The sources are the ones llama-cpp-python vendors (``vendor/llama.cpp`` in its sdist), at the
version installed here, so the CLI and the host engine run the same llama.cpp. Only the
completion tool is built (no server, no TLS, no tests): since llama.cpp split its CLI in two,
``llama-cli`` is a chat front end on top of the server code that refuses ``-no-cnv``, and the
classic tool the Android engine drives (``-no-cnv -f prompt``) is ``llama-completion``; older
trees have only ``llama-cli``, which is then that tool.

The build takes minutes, so the binary is cached under devicelab's cache directory, keyed by
the llama-cpp-python version: ``python -m devicelab_android.hostcli`` builds it once (CI does
this before the tests) and prints its path. Other llama.cpp tools build the same way, each
cached beside it: ``host_tool("llama-bench")`` (``--target llama-bench``) is what
bench/vs_llama_bench.py measures the host engine against.

Linked statically, so the one file can be copied or pushed anywhere on this host.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import devicelab
from devicelab import cache_dir

PACKAGE = "llama-cpp-python"
BUILD_COMMAND = "python -m devicelab_android.hostcli"
CMAKE_FIX = "pip install cmake (or your system's package, e.g. sudo apt-get install cmake)"
COMPILER_FIX = (
    "install a C/C++ compiler (Debian/Ubuntu: sudo apt-get install build-essential; "
    "macOS: xcode-select --install), or point CC and CXX at one"
)

Progress = Callable[[str], None]

# The completion tool, whatever its target is called in the tree at hand (see above).
CLI = "cli"


class HostCliError(devicelab.UsageError):
    """The host CLI could not be built; the message names the step that failed and what to
    install or fix (bad input to devicelab: exit 2)."""


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise devicelab.MissingDependencyError(
            f"the host llama.cpp CLI is built from the sources of the installed {PACKAGE}, "
            f"which is not installed. Install it: pip install {PACKAGE}"
        ) from None


def build_dir(version: str | None = None) -> Path:
    """The cache directory of one version's build (binary and ``build.json``)."""
    return cache_dir() / "llama.cpp-host-cli" / f"{PACKAGE}-{version or llama_cpp_version()}"


def find_host_cli(version: str | None = None) -> Path | None:
    """The cached completion CLI, or None when it has not been built for this version."""
    return find_tool(CLI, version)


def find_tool(tool: str, version: str | None = None) -> Path | None:
    """The cached binary of ``tool`` (a cmake target, or :data:`CLI`), or None when it has not
    been built for this version."""
    info = build_info(version, tool)
    if info is None:
        return None
    binary = build_dir(version) / str(info["binary"])
    return binary if binary.is_file() else None


def _info_path(version: str | None, tool: str) -> Path:
    # The CLI's record keeps its first name, so caches built before other tools stay valid.
    return build_dir(version) / ("build.json" if tool == CLI else f"build-{tool}.json")


def build_info(version: str | None = None, tool: str = CLI) -> dict[str, Any] | None:
    """What the build recorded: version, llama.cpp commit, target, seconds, size."""
    try:
        info: dict[str, Any] = json.loads(_info_path(version, tool).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info


def host_cli(progress: Progress = print, version: str | None = None) -> Path:
    """The host's llama.cpp completion CLI for the installed llama-cpp-python, built if missing."""
    return host_tool(CLI, progress, version)


def host_tool(tool: str, progress: Progress = print, version: str | None = None) -> Path:
    """The host's build of one llama.cpp tool (``"llama-bench"``, or :data:`CLI`) for the
    installed llama-cpp-python, built if missing."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", tool):
        raise HostCliError(f"{tool!r} is not a cmake target name (e.g. llama-bench).")
    version = version or llama_cpp_version()
    if (found := find_tool(tool, version)) is not None:
        return found
    out = build_dir(version)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out / ".lock"):
        # Another process may have built it while this one waited for the lock.
        if (found := find_tool(tool, version)) is not None:
            return found
        return _build(version, out, tool, progress)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_tools() -> None:
    if shutil.which("cmake") is None:
        raise devicelab.MissingDependencyError(
            f"building the host llama.cpp CLI needs cmake, which is not on PATH: {CMAKE_FIX}."
        )
    for env, names in (("CC", ("cc", "gcc", "clang")), ("CXX", ("c++", "g++", "clang++"))):
        given = os.environ.get(env)
        candidates = (given,) if given else names
        if not any(shutil.which(name) for name in candidates):
            what = f"{env}={given} is not an executable" if given else f"no {' / '.join(names)}"
            raise devicelab.MissingDependencyError(
                f"building the host llama.cpp CLI needs a C and a C++ compiler ({what}): "
                f"{COMPILER_FIX}."
            )


def _build(
    version: str,
    out: Path,
    tool: str,
    progress: Progress,
    cmake_extra: Sequence[str] = (),
    info_path: Path | None = None,
    extra_info: Mapping[str, Any] | None = None,
) -> Path:
    """Build ``tool`` from the sdist's llama.cpp into ``out``; ``cmake_extra`` adds configure
    options (a cross build's toolchain and flags) and ``extra_info`` joins the record."""
    if not cmake_extra:
        check_tools()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="devicelab-llama-build-") as tmp_name:
        tmp = Path(tmp_name)
        progress(f"downloading the {PACKAGE} {version} sdist (for its vendored llama.cpp)")
        sdist = _download_sdist(version, tmp)
        progress(f"extracting vendor/llama.cpp from {sdist.name}")
        src = _extract_llama_cpp(sdist, tmp / "src")
        target = tool
        if tool == CLI:
            target = "llama-completion" if (src / "tools" / "completion").is_dir() else "llama-cli"
        commit = _commit(src)
        progress(f"configuring llama.cpp {commit or '(unknown commit)'} with cmake")
        build = tmp / "build"
        configure = ["cmake", "-S", str(src), "-B", str(build), *_cmake_options(), *cmake_extra]
        _run(configure, "cmake configure")
        jobs = str(os.cpu_count() or 1)
        progress(f"building {target} on {jobs} cores (a few minutes, once per version)")
        _run(
            ["cmake", "--build", str(build), "--config", "Release", "--target", target, "-j", jobs],
            "cmake build",
            progress,
        )
        built = next((p for p in build.rglob(target) if p.is_file()), None)
        if built is None:
            raise HostCliError(f"cmake built {target} but no {target} file is in {build}.")
        tmp_binary = out / f".{target}.part"
        shutil.copy2(built, tmp_binary)
        tmp_binary.replace(out / target)
    seconds = round(time.perf_counter() - t0, 1)
    info = {
        "llama_cpp_python": version,
        "llama_cpp_commit": commit,
        "binary": target,
        "build_seconds": seconds,
        "size_bytes": (out / target).stat().st_size,
        **(extra_info or {}),
    }
    # The record last: its presence is what marks the build complete.
    record = info_path or _info_path(version, tool)
    record.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    progress(f"built {out / target} in {seconds:.0f} s")
    return out / target


def _cmake_options() -> list[str]:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    return [
        *generator,
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_BUILD_APP=OFF",
        # Neither downloads models nor talks HTTPS here; older trees default LLAMA_CURL on.
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-Wno-dev",
    ]


def _download_sdist(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    _run([*cmd, "--dest", str(dest), f"{PACKAGE}=={version}"], "pip download")
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz")) + sorted(
        dest.glob("llama-cpp-python-*.tar.gz")
    )
    if not found:
        raise HostCliError(f"pip download left no {PACKAGE} {version} sdist in {dest}.")
    return found[0]


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        # vendor/llama.cpp is a git submodule: its .git file points into the sdist's
        # .git/modules, which llama.cpp's build reads for the commit the binary reports.
        wanted = ("/vendor/llama.cpp/", "/.git/modules/vendor/llama.cpp/")
        members = [m for m in tar.getmembers() if any(w in f"{m.name}/" for w in wanted)]
        if not members:
            raise HostCliError(f"{sdist.name} holds no vendor/llama.cpp: not a usable sdist.")
        for m in members:
            # The sdist comes from the registry: refuse paths that would land outside dest.
            if m.name.startswith("/") or ".." in Path(m.name).parts:
                raise HostCliError(f"{sdist.name}: refusing the unsafe path {m.name!r}.")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Pythons without extraction filters
            tar.extractall(dest, members=[m for m in members if not (m.issym() or m.islnk())])
    top = members[0].name.split("/", 1)[0]
    return dest / top / "vendor" / "llama.cpp"


def _commit(src: Path) -> str | None:
    """The llama.cpp commit the sdist vendors (the submodule's HEAD, a detached commit)."""
    git = src / ".git"
    with contextlib.suppress(OSError):
        if git.is_file():
            pointer = git.read_text(encoding="utf-8").strip()
            if pointer.startswith("gitdir:"):
                git = (src / pointer.removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if re.fullmatch(r"[0-9a-f]{40}", head):
            return head
    return None


def _run(cmd: list[str], step: str, progress: Progress | None = None) -> None:
    """Run one build step; its last lines go into the error if it fails."""
    tail: deque[str] = deque(maxlen=30)
    shown = -10
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                tail.append(line.rstrip())
                pct = _percent(line)
                if progress is not None and pct is not None and pct >= shown + 10:
                    shown = pct - pct % 10
                    progress(f"  {pct:3d}% {line.strip()[:100]}")
        except BaseException:
            # Interrupted: leave no compiler running on after us (cmake's own children too).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    if proc.returncode != 0:
        raise HostCliError(
            f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail)
        )


def _percent(line: str) -> int | None:
    # Ninja prints "[12/150] ...", Make "[ 8%] ...".
    if m := re.match(r"\[(\d+)/(\d+)\]", line):
        return 100 * int(m.group(1)) // max(int(m.group(2)), 1)
    if m := re.match(r"\[\s*(\d+)%\]", line):
        return int(m.group(1))
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m devicelab_android.hostcli``: build (once) and print the binary's path."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=BUILD_COMMAND, description="Build (once, cached) and print the host llama.cpp CLI."
    )
    parser.add_argument(
        "--llama-cpp-python",
        metavar="VERSION",
        help=f"the {PACKAGE} version whose llama.cpp to build (default: the installed one)",
    )
    parser.add_argument(
        "--target",
        default=CLI,
        help="the llama.cpp cmake target to build, e.g. llama-bench (default: the completion CLI)",
    )
    args = parser.parse_args(argv)
    try:
        show = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        path = host_tool(args.target, show, args.llama_cpp_python)
    except devicelab.DevicelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return devicelab.exit_code(exc)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
