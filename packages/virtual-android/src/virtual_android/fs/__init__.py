"""The phone's filesystem, in memory: files, directories, links and generated files (/proc, /sys)."""

from .filesystem import FsError, StatResult, VirtualFS

__all__ = ["FsError", "StatResult", "VirtualFS"]
