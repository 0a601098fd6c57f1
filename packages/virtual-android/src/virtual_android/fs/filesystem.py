"""An in-memory filesystem for the virtual phone, with dynamic /proc and /sys files."""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import VirtualAndroidError

Generator = Callable[[], bytes]

# Where the shell user (uid 2000) may create, change and remove files.
WRITABLE_ROOTS = (
    "/storage/emulated/0",
    "/data/local/tmp",
    "/data/misc/perfetto-traces",
    "/data/misc/perfetto-configs",
)
READ_ONLY_ROOTS = ("/system", "/vendor", "/product", "/apex", "/odm")

_MAX_LINKS = 40
# Path lookups and glob expansions are memoized until the tree's shape changes; past this
# many entries the memo starts over (a script touching endless distinct paths).
_MEMO_LIMIT = 4096


@functools.lru_cache(maxsize=_MEMO_LIMIT)
def _normpath(path: str, cwd: str) -> str:
    if not path.startswith("/"):
        path = posixpath.join(cwd or "/", path)
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


class FsError(VirtualAndroidError):
    """A failed filesystem operation; str() is the strerror text, like errno's."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return self.message


def _enoent(path: str) -> FsError:
    return FsError(path, "No such file or directory")


@dataclass
class Node:
    mode: int
    mtime: int
    uid: int = 0
    gid: int = 0


@dataclass
class File(Node):
    data: bytearray = field(default_factory=bytearray)
    generator: Generator | None = None
    nominal_size: int | None = None  # what stat reports for generated files


@dataclass
class Dir(Node):
    children: dict[str, Node] = field(default_factory=dict)


@dataclass
class Link(Node):
    target: str = ""


@dataclass(frozen=True)
class StatResult:
    path: str
    mode: int
    size: int
    mtime: int
    uid: int
    gid: int
    nlink: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)


def _now() -> int:
    return int(time.time())


class VirtualFS:
    """A tree of directories, regular files, symlinks and generated files."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.root = Dir(mode=stat.S_IFDIR | 0o755, mtime=_now())
        # Memos of _walk and glob, valid while no directory entry is added, replaced or
        # removed (every such change goes through _changed). File contents, modes and
        # times may change freely: the memos hold nodes, never what is in them.
        self._walks: dict[tuple[str, bool], tuple[Node | None, str]] = {}
        self._globs: dict[tuple[str, str], list[str]] = {}

    def _changed(self) -> None:
        """The tree's shape changed: forget memoized lookups (call with the lock held)."""
        self._walks.clear()
        self._globs.clear()

    # -- paths -----------------------------------------------------------------
    @staticmethod
    def normpath(path: str, cwd: str = "/") -> str:
        return _normpath(path, cwd)

    def _walk(self, path: str, follow_last: bool) -> tuple[Node | None, str]:
        """Resolve an absolute normalized path; returns (node or None, resolved path)."""
        key = (path, follow_last)
        found = self._walks.get(key)
        if found is None:
            found = self._walk_uncached(path, follow_last)
            if len(self._walks) >= _MEMO_LIMIT:
                self._walks.clear()
            self._walks[key] = found
        return found

    def _walk_uncached(self, path: str, follow_last: bool) -> tuple[Node | None, str]:
        parts = [p for p in path.split("/") if p]
        node: Node = self.root
        resolved: list[str] = []
        hops = 0
        i = 0
        while i < len(parts):
            name = parts[i]
            if not isinstance(node, Dir):
                raise FsError(path, "Not a directory")
            if name == "..":
                if resolved:
                    resolved.pop()
                node = self._lookup_parts(resolved)
                i += 1
                continue
            child = node.children.get(name)
            if child is None:
                return None, "/" + "/".join(resolved + parts[i:])
            last = i == len(parts) - 1
            if isinstance(child, Link) and (follow_last or not last):
                hops += 1
                if hops > _MAX_LINKS:
                    raise FsError(path, "Too many symbolic links encountered")
                target = child.target
                base = "/" + "/".join(resolved)
                new_path = self.normpath(target, base)
                parts = [p for p in new_path.split("/") if p] + parts[i + 1 :]
                node = self.root
                resolved = []
                i = 0
                continue
            node = child
            resolved.append(name)
            i += 1
        return node, "/" + "/".join(resolved)

    def _lookup_parts(self, parts: list[str]) -> Node:
        node: Node = self.root
        for name in parts:
            assert isinstance(node, Dir)
            node = node.children[name]
        return node

    def resolve(self, path: str, cwd: str = "/", follow: bool = True) -> str:
        """The canonical path (links resolved) of a path that may not exist yet."""
        with self._lock:
            _node, resolved = self._walk(self.normpath(path, cwd), follow)
            return resolved

    def lookup(self, path: str, cwd: str = "/", follow: bool = True) -> Node | None:
        with self._lock:
            try:
                node, _ = self._walk(self.normpath(path, cwd), follow)
            except FsError:
                return None
            return node

    def _parent_dir(self, path: str, create: bool = False) -> tuple[Dir, str]:
        parent_path, name = posixpath.split(path)
        if not name:
            raise FsError(path, "Is a directory")
        parent, _ = self._walk(parent_path, True)
        if parent is None:
            if not create:
                raise _enoent(path)
            self._mkdirs(parent_path)
            parent, _ = self._walk(parent_path, True)
        if not isinstance(parent, Dir):
            raise FsError(path, "Not a directory")
        return parent, name

    @staticmethod
    def writable(path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in WRITABLE_ROOTS)

    def _check_writable(self, resolved: str) -> None:
        if self.writable(resolved):
            return
        if any(resolved == r or resolved.startswith(r + "/") for r in READ_ONLY_ROOTS):
            raise FsError(resolved, "Read-only file system")
        raise FsError(resolved, "Permission denied")

    # -- queries ---------------------------------------------------------------
    def exists(self, path: str, cwd: str = "/") -> bool:
        return self.lookup(path, cwd) is not None

    def is_dir(self, path: str, cwd: str = "/") -> bool:
        return isinstance(self.lookup(path, cwd), Dir)

    def is_file(self, path: str, cwd: str = "/") -> bool:
        return isinstance(self.lookup(path, cwd), File)

    def stat(self, path: str, cwd: str = "/", follow: bool = True) -> StatResult:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, _ = self._walk(norm, follow)
            if node is None:
                raise _enoent(norm)
            return self._stat_node(norm, node)

    @staticmethod
    def _stat_node(path: str, node: Node) -> StatResult:
        if isinstance(node, File):
            if node.generator is not None:
                size = node.nominal_size if node.nominal_size is not None else 0
            else:
                size = len(node.data)
            nlink = 1
        elif isinstance(node, Dir):
            size = 3488
            nlink = 2 + sum(1 for c in node.children.values() if isinstance(c, Dir))
        else:
            assert isinstance(node, Link)
            size = len(node.target.encode())
            nlink = 1
        return StatResult(path, node.mode, size, node.mtime, node.uid, node.gid, nlink)

    def listdir(self, path: str, cwd: str = "/") -> list[str]:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, _ = self._walk(norm, True)
            if node is None:
                raise _enoent(norm)
            if not isinstance(node, Dir):
                raise FsError(norm, "Not a directory")
            return sorted(node.children)

    def read(self, path: str, cwd: str = "/") -> bytes:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, _ = self._walk(norm, True)
            if node is None:
                raise _enoent(norm)
            if isinstance(node, Dir):
                raise FsError(norm, "Is a directory")
            assert isinstance(node, File)
            generator = node.generator
            if generator is None:
                return bytes(node.data)
        return generator()

    def readlink(self, path: str, cwd: str = "/") -> str:
        node = self.lookup(path, cwd, follow=False)
        if not isinstance(node, Link):
            raise FsError(path, "Invalid argument")
        return node.target

    # -- changes ---------------------------------------------------------------
    def write(
        self,
        path: str,
        data: bytes,
        cwd: str = "/",
        append: bool = False,
        mode: int | None = None,
        mtime: int | None = None,
        make_parents: bool = False,
        check_perms: bool = True,
    ) -> None:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, resolved = self._walk(norm, True)
            if check_perms:
                self._check_writable(resolved)
            if isinstance(node, Dir):
                raise FsError(norm, "Is a directory")
            if isinstance(node, File) and node.generator is None:
                if append:
                    node.data.extend(data)
                else:
                    node.data = bytearray(data)
                if mode is not None:
                    node.mode = stat.S_IFREG | (mode & 0o7777)
                node.mtime = mtime if mtime is not None else _now()
                return
            if isinstance(node, File):
                raise FsError(norm, "Permission denied")
            parent, name = self._parent_dir(resolved, create=make_parents)
            perm = 0o666 if mode is None else mode & 0o7777
            parent.children[name] = File(
                mode=stat.S_IFREG | perm,
                mtime=mtime if mtime is not None else _now(),
                uid=2000,
                gid=2000,
                data=bytearray(data),
            )
            self._changed()
            parent.mtime = _now()

    def touch(self, path: str, cwd: str = "/", mtime: int | None = None) -> None:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, resolved = self._walk(norm, True)
            if node is None:
                self.write(norm, b"", check_perms=True)
                return
            self._check_writable(resolved)
            node.mtime = mtime if mtime is not None else _now()

    def mkdir(self, path: str, cwd: str = "/", parents: bool = False, mode: int = 0o771) -> None:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, resolved = self._walk(norm, True)
            if node is not None:
                if parents and isinstance(node, Dir):
                    return
                raise FsError(norm, "File exists")
            self._check_writable(resolved)
            if parents:
                self._mkdirs(resolved, mode)
                return
            parent, name = self._parent_dir(resolved)
            parent.children[name] = Dir(mode=stat.S_IFDIR | mode, mtime=_now(), uid=2000, gid=2000)
            self._changed()

    def _mkdirs(self, path: str, mode: int = 0o771) -> None:
        node: Node = self.root
        built = ""
        for name in [p for p in path.split("/") if p]:
            built += "/" + name
            assert isinstance(node, Dir)
            child = node.children.get(name)
            if isinstance(child, Link):
                child, _ = self._walk(built, True)
            if child is None:
                child = Dir(mode=stat.S_IFDIR | mode, mtime=_now(), uid=2000, gid=2000)
                node.children[name] = child
                self._changed()
            if not isinstance(child, Dir):
                raise FsError(built, "Not a directory")
            node = child

    def remove(
        self, path: str, cwd: str = "/", recursive: bool = False, dir_ok: bool = False
    ) -> None:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, _ = self._walk(norm, False)
            if node is None:
                raise _enoent(norm)
            parent_path, name = posixpath.split(norm)
            parent, parent_resolved = self._walk(parent_path, True)
            assert isinstance(parent, Dir)
            self._check_writable(posixpath.join(parent_resolved, name))
            if isinstance(node, Dir):
                if node.children and not recursive:
                    raise FsError(norm, "Directory not empty" if dir_ok else "Is a directory")
                if not recursive and not dir_ok:
                    raise FsError(norm, "Is a directory")
            del parent.children[name]
            self._changed()
            parent.mtime = _now()

    def chmod(self, path: str, mode: int, cwd: str = "/") -> None:
        norm = self.normpath(path, cwd)
        with self._lock:
            node, resolved = self._walk(norm, True)
            if node is None:
                raise _enoent(norm)
            self._check_writable(resolved)
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)

    def rename(self, src: str, dst: str, cwd: str = "/") -> None:
        src_norm = self.normpath(src, cwd)
        dst_norm = self.normpath(dst, cwd)
        with self._lock:
            node, _ = self._walk(src_norm, False)
            if node is None:
                raise _enoent(src_norm)
            target, dst_resolved = self._walk(dst_norm, True)
            if isinstance(target, Dir):
                dst_resolved = posixpath.join(dst_resolved, posixpath.basename(src_norm))
            self._check_writable(dst_resolved)
            src_parent, src_name = self._parent_dir(self.resolve(src_norm, follow=False))
            self._check_writable(self.resolve(src_norm, follow=False))
            dst_parent, dst_name = self._parent_dir(dst_resolved)
            del src_parent.children[src_name]
            dst_parent.children[dst_name] = node
            self._changed()

    # -- setup helpers (no permission checks) ----------------------------------
    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        with self._lock:
            self._mkdirs(path, mode)
            node, _ = self._walk(path, True)
            assert node is not None
            node.mode = stat.S_IFDIR | mode
            node.uid, node.gid = uid, gid

    def add_file(self, path: str, data: bytes | str = b"", mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            parent, name = self._parent_dir(path, create=True)
            parent.children[name] = File(
                mode=stat.S_IFREG | mode, mtime=_now(), data=bytearray(raw)
            )
            self._changed()

    def add_generated(
        self, path: str, generator: Generator, mode: int = 0o444, size: int = 0
    ) -> None:
        with self._lock:
            parent, name = self._parent_dir(path, create=True)
            parent.children[name] = File(
                mode=stat.S_IFREG | mode, mtime=_now(), generator=generator, nominal_size=size
            )
            self._changed()

    def add_link(self, path: str, target: str) -> None:
        with self._lock:
            parent, name = self._parent_dir(path, create=True)
            parent.children[name] = Link(mode=stat.S_IFLNK | 0o777, mtime=_now(), target=target)
            self._changed()

    def drop(self, path: str) -> None:
        """Remove a node regardless of permissions (for /proc entries)."""
        with self._lock:
            parent_path, name = posixpath.split(path)
            parent, _ = self._walk(parent_path, True)
            if isinstance(parent, Dir) and parent.children.pop(name, None) is not None:
                self._changed()

    # -- globbing --------------------------------------------------------------
    @staticmethod
    def has_magic(pattern: str) -> bool:
        return "*" in pattern or "?" in pattern or "[" in pattern

    def glob(self, pattern: str, cwd: str = "/") -> list[str]:
        """Expand a shell glob; an empty list when nothing matches."""
        key = (pattern, cwd)
        with self._lock:
            found = self._globs.get(key)
            if found is None:
                found = self._glob_uncached(pattern, cwd)
                if len(self._globs) >= _MEMO_LIMIT:
                    self._globs.clear()
                self._globs[key] = found
            return list(found)

    def _glob_uncached(self, pattern: str, cwd: str) -> list[str]:
        absolute = pattern.startswith("/")
        parts = [p for p in pattern.split("/") if p]
        bases = ["/"] if absolute else [""]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            next_bases: list[str] = []
            for base in bases:
                base_dir = base if base else cwd
                if not self.has_magic(part):
                    candidate = posixpath.join(base, part) if base else part
                    full = self.normpath(candidate, cwd)
                    if (last and self.lookup(full, follow=False) is not None) or (
                        not last and self.is_dir(full)
                    ):
                        next_bases.append(candidate)
                    continue
                try:
                    names = self.listdir(base_dir or "/", cwd)
                except FsError:
                    continue
                for name in names:
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    if not fnmatch.fnmatchcase(name, part):
                        continue
                    candidate = posixpath.join(base, name) if base else name
                    if not last and not self.is_dir(self.normpath(candidate, cwd)):
                        continue
                    next_bases.append(candidate)
            bases = next_bases
            if not bases:
                return []
        return sorted(bases)
