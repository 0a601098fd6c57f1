"""The view tree the screen is made of: what uiautomator sees of each window.

Apps build `UiNode` trees (apps.py); the screen (u2server.DeviceScreen) stacks them into
`Window`s, which the u2 server dumps as XML and render.py draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..system.packages import LAUNCHER_ACTIVITY, LAUNCHER_PACKAGE
from ..system.window import STATUS_BAR_HEIGHT

__all__ = [
    "LAUNCHER_ACTIVITY",
    "LAUNCHER_PACKAGE",
    "STATUS_BAR_HEIGHT",
    "SYSTEMUI_PACKAGE",
    "Rect",
    "UiNode",
    "Window",
]

SYSTEMUI_PACKAGE = "com.android.systemui"

Rect = tuple[int, int, int, int]  # left, top, right, bottom


# -- the view tree ---------------------------------------------------------------------
@dataclass
class UiNode:
    """One accessibility node: what uiautomator sees of a view.

    `on_click` runs when a tap lands on the node (and it is enabled); `on_text` makes it
    editable (setText, typed text). `key` names the node for focus tracking; it is not
    rendered. `package` is filled in from the window when left empty.
    """

    class_name: str
    bounds: Rect
    text: str = ""
    resource_id: str = ""
    content_desc: str = ""
    hint: str = ""
    package: str = ""
    checkable: bool = False
    checked: bool = False
    clickable: bool = False
    enabled: bool = True
    focusable: bool = False
    focused: bool = False
    scrollable: bool = False
    long_clickable: bool = False
    password: bool = False
    selected: bool = False
    children: list[UiNode] = field(default_factory=list)
    on_click: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    on_text: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    key: str = ""
    # How far the view reaches above its (clipped) bounds when a list is scrolled: the
    # picture draws its text from there. Not dumped: uiautomator shows visible bounds only.
    hidden_above: int = field(default=0, compare=False)

    @property
    def editable(self) -> bool:
        return self.on_text is not None

    def walk(self) -> Iterator[UiNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def contains(self, x: float, y: float) -> bool:
        left, top, right, bottom = self.bounds
        return left <= x < right and top <= y < bottom


@dataclass
class Window:
    package: str
    activity: str
    root: UiNode
