"""What uiautomator reports of the windows: the XML `dumpWindowHierarchy` (and `uiautomator
dump`) returns and the ObjInfo JSON the u2 server answers for a UiObject.

Both use Android's names, attribute set and order, so a parser written against a phone's
dump reads these.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .ui import UiNode, Window

__all__ = ["obj_info", "render_hierarchy"]

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _attr(value: str) -> str:
    # Model output can hold any character; XML 1.0 cannot, so invalid ones are dropped and
    # the rest escaped the way Android's XmlSerializer does.
    value = _XML_INVALID.sub("", value)
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


def _is_plain_container(node: UiNode) -> bool:
    """What uiautomator's compressed dump leaves out: layout-only nodes."""
    return not (
        node.text
        or node.content_desc
        or node.resource_id
        or node.clickable
        or node.scrollable
        or node.focusable
        or node.checkable
        or node.long_clickable
        or node.editable
    )


def _compress(nodes: list[UiNode]) -> list[UiNode]:
    out: list[UiNode] = []
    for node in nodes:
        children = _compress(node.children)
        if _is_plain_container(node) and node.children:
            out.extend(children)
        else:
            out.append(_replace_children(node, children))
    return out


def _replace_children(node: UiNode, children: list[UiNode]) -> UiNode:
    return dataclasses.replace(node, children=children)


def render_hierarchy(
    windows: list[Window], rotation: int, compressed: bool = False, max_depth: int = 50
) -> str:
    """Windows -> the XML `dumpWindowHierarchy` returns (Android's attribute set and order)."""
    lines = [
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>",
        f'<hierarchy rotation="{rotation}">',
    ]

    def emit(node: UiNode, index: int, depth: int, order: int) -> None:
        left, top, right, bottom = node.bounds
        attrs = (
            f'index="{index}" text="{_attr(node.text)}" resource-id="{_attr(node.resource_id)}" '
            f'class="{_attr(node.class_name)}" package="{_attr(node.package)}" '
            f'content-desc="{_attr(node.content_desc)}" checkable="{_bool(node.checkable)}" '
            f'checked="{_bool(node.checked)}" clickable="{_bool(node.clickable)}" '
            f'enabled="{_bool(node.enabled)}" focusable="{_bool(node.focusable)}" '
            f'focused="{_bool(node.focused)}" scrollable="{_bool(node.scrollable)}" '
            f'long-clickable="{_bool(node.long_clickable)}" password="{_bool(node.password)}" '
            f'selected="{_bool(node.selected)}" visible-to-user="true" '
            f'bounds="[{left},{top}][{right},{bottom}]" drawing-order="{order}" '
            f'hint="{_attr(node.hint)}" display-id="0"'
        )
        children = node.children if depth < max_depth else []
        if not children:
            lines.append(f"{'  ' * depth}<node {attrs} />")
            return
        lines.append(f"{'  ' * depth}<node {attrs}>")
        for i, child in enumerate(children):
            emit(child, i, depth + 1, i + 1)
        lines.append(f"{'  ' * depth}</node>")

    roots = [w.root for w in windows]
    if compressed:
        roots = [_replace_children(r, _compress(r.children)) for r in roots]
    for i, root in enumerate(roots):
        emit(root, i, 1, 0)
    lines.append("</hierarchy>")
    return "\n".join(lines)


def obj_info(node: UiNode) -> dict[str, Any]:
    """The ObjInfo JSON the server returns for a UiObject (uiautomator2 reads its bounds)."""
    left, top, right, bottom = node.bounds
    bounds = {"left": left, "top": top, "right": right, "bottom": bottom}
    return {
        "bounds": bounds,
        "checkable": node.checkable,
        "checked": node.checked,
        "childCount": len(node.children),
        "className": node.class_name,
        "clickable": node.clickable,
        "contentDescription": node.content_desc,
        "enabled": node.enabled,
        "focusable": node.focusable,
        "focused": node.focused,
        "longClickable": node.long_clickable,
        "packageName": node.package,
        "resourceName": node.resource_id or None,
        "scrollable": node.scrollable,
        "selected": node.selected,
        "text": node.text,
        "visibleBounds": dict(bounds),
    }
