"""One exception root: whatever the virtual phone raises, `except VirtualAndroidError` catches."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import virtual_android
from virtual_android import VirtualAndroidError


def _exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(virtual_android.__path__, "virtual_android."):
        if info.name.endswith(".__main__"):  # importing it runs the CLI
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
    return found


def test_every_exception_the_package_defines_derives_from_the_root() -> None:
    classes = _exception_classes()
    names = {cls.__name__ for cls in classes}
    # The walk saw the modules: these live in four different subpackages.
    assert {"FsError", "ProtocolError", "RpcError", "ShellSyntaxError", "NoBackendError"} <= names
    outside = sorted(c.__qualname__ for c in classes if not issubclass(c, VirtualAndroidError))
    assert outside == []


def test_built_in_kinds_are_kept_beside_the_root() -> None:
    from virtual_android.inference.llm import NotGGUFError

    assert issubclass(NotGGUFError, ValueError)
    assert issubclass(virtual_android.NoBackendError, RuntimeError)
