"""The phone's filesystem, in memory (filesystem), and the tree an Android phone shows in it:
/system, /data, /sdcard, and /proc and /sys generated from the device's state (android)."""

from .android import ProcessEntry, ProcView
from .filesystem import FsError, StatResult, VirtualFS

__all__ = ["FsError", "ProcView", "ProcessEntry", "StatResult", "VirtualFS"]
