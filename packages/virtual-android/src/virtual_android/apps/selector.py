"""Which nodes a uiautomator2 `Selector` names: UiSelector's matching, done on `UiNode` trees.

uiautomator2 sends a selector as a dict (uiautomator2/_selector.py builds it): the fields that
are set, a `mask` with one bit per set field (a field may be set to its default value), and
`childOrSibling` / `childOrSiblingSelector`, the chain of narrowing steps. The u2 server
(u2rpc.py) finds nodes with `match_selector`, and the UiObjects it hands out by id are
`ObjectRef`s, found again from their selector on every use, as UiObject is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import VirtualAndroidError
from .ui import UiNode

__all__ = [
    "MASK_BITS",
    "ObjectRef",
    "SelectorError",
    "chain",
    "describe_selector",
    "field_selector",
    "match_selector",
    "resolve",
]

# uiautomator2's Selector mask bits, used to know which keys of the dict are set.
MASK_BITS: dict[str, int] = {
    "text": 0x01,
    "textContains": 0x02,
    "textMatches": 0x04,
    "textStartsWith": 0x08,
    "className": 0x10,
    "classNameMatches": 0x20,
    "description": 0x40,
    "descriptionContains": 0x80,
    "descriptionMatches": 0x0100,
    "descriptionStartsWith": 0x0200,
    "checkable": 0x0400,
    "checked": 0x0800,
    "clickable": 0x1000,
    "longClickable": 0x2000,
    "scrollable": 0x4000,
    "enabled": 0x8000,
    "focusable": 0x010000,
    "focused": 0x020000,
    "selected": 0x040000,
    "packageName": 0x080000,
    "packageNameMatches": 0x100000,
    "resourceId": 0x200000,
    "resourceIdMatches": 0x400000,
    "index": 0x800000,
    "instance": 0x01000000,
}


class SelectorError(VirtualAndroidError):
    """A selector that cannot be matched; str() is the Java exception the server reports."""


def _fullmatch(pattern: str, value: str) -> bool:
    # Java's String.matches: the whole value, no DOTALL.
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error as exc:
        raise SelectorError(
            f"java.util.regex.PatternSyntaxException: {exc} near index {exc.pos}"
        ) from exc


# A string field is compared one of four ways, named by the key's suffix (UiSelector's
# text / textContains / textMatches / textStartsWith, and likewise for the others).
_STRING_TESTS: dict[str, Callable[[str, Any], bool]] = {
    "": lambda value, want: value == want,
    "Contains": lambda value, want: str(want) in value,
    "Matches": lambda value, want: _fullmatch(str(want), value),
    "StartsWith": lambda value, want: value.startswith(str(want)),
}
_STRING_ATTRIBUTES = {
    "text": "text",
    "className": "class_name",
    "description": "content_desc",
    "packageName": "package",
    "resourceId": "resource_id",
}
_STRING_FIELDS: dict[str, tuple[str, Callable[[str, Any], bool]]] = {
    key + suffix: (attribute, test)
    for key, attribute in _STRING_ATTRIBUTES.items()
    for suffix, test in _STRING_TESTS.items()
    if key + suffix in MASK_BITS
}
# The boolean fields are UiNode's attributes of the same name (longClickable excepted).
_BOOLEAN_ATTRIBUTES = {"longClickable": "long_clickable"}


@dataclass(frozen=True)
class _Flat:
    node: UiNode
    parent: int  # position of the parent in the flat list, -1 for a root
    index: int  # index among the parent's children


def _flatten(roots: list[UiNode]) -> list[_Flat]:
    flat: list[_Flat] = []

    def add(node: UiNode, parent: int, index: int) -> None:
        position = len(flat)
        flat.append(_Flat(node, parent, index))
        for i, child in enumerate(node.children):
            add(child, position, i)

    for i, root in enumerate(roots):
        add(root, -1, i)
    return flat


def _fields(selector: dict[str, Any]) -> dict[str, Any]:
    mask = int(selector.get("mask", 0) or 0)
    return {k: selector[k] for k, bit in MASK_BITS.items() if mask & bit and k in selector}


def _matches(entry: _Flat, fields: dict[str, Any]) -> bool:
    node = entry.node
    for key, want in fields.items():
        if key == "instance":
            continue
        if key in _STRING_FIELDS:
            attribute, test = _STRING_FIELDS[key]
            ok = test(getattr(node, attribute), want)
        elif key == "index":
            ok = entry.index == int(want)
        else:  # checkable, checked, clickable, scrollable, enabled, focusable, ...
            ok = getattr(node, _BOOLEAN_ATTRIBUTES.get(key, key)) == bool(want)
        if not ok:
            return False
    return True


def _select(flat: list[_Flat], candidates: list[int], selector: dict[str, Any]) -> list[int]:
    fields = _fields(selector)
    found = [i for i in candidates if _matches(flat[i], fields)]
    if "instance" in fields:
        instance = int(fields["instance"])
        return found[instance : instance + 1]
    return found


def _descendants(flat: list[_Flat], position: int) -> list[int]:
    # Pre-order: a node's subtree is the run of entries right after it whose parents are
    # inside the subtree.
    inside = {position}
    out: list[int] = []
    for i in range(position + 1, len(flat)):
        if flat[i].parent not in inside:
            break
        inside.add(i)
        out.append(i)
    return out


def _siblings(flat: list[_Flat], position: int) -> list[int]:
    """The rest of the parent's subtree (UiSelector's fromParent looks there)."""
    parent = flat[position].parent
    pool = _descendants(flat, parent) if parent >= 0 else []
    return [i for i in pool if i != position]


def _match(flat: list[_Flat], selector: dict[str, Any]) -> list[int]:
    current = _select(flat, list(range(len(flat))), selector)
    relations = list(selector.get("childOrSibling") or [])
    subs = list(selector.get("childOrSiblingSelector") or [])
    for relation, sub in zip(relations, subs, strict=False):
        scope: list[int] = []
        for position in current:
            if relation == "sibling":
                scope.extend(_siblings(flat, position))
            else:
                scope.extend(_descendants(flat, position))
        current = _select(flat, sorted(set(scope)), dict(sub))
    return current


def match_selector(roots: list[UiNode], selector: dict[str, Any]) -> list[UiNode]:
    """All nodes a uiautomator2 Selector dict matches, in document order.

    `instance` picks the n-th match; `childOrSibling` chains narrow the search to the
    descendants ("child") or to the parent's subtree ("sibling") of the previous matches.
    """
    flat = _flatten(roots)
    return [flat[i].node for i in _match(flat, selector)]


_JAVA_NAMES = {
    "text": "TEXT",
    "textContains": "CONTAINS_TEXT",
    "textMatches": "TEXT_REGEX",
    "textStartsWith": "START_TEXT",
    "className": "CLASS",
    "classNameMatches": "CLASS_REGEX",
    "description": "DESCRIPTION",
    "descriptionContains": "CONTAINS_DESCRIPTION",
    "descriptionMatches": "DESCRIPTION_REGEX",
    "descriptionStartsWith": "START_DESCRIPTION",
    "packageName": "PACKAGE_NAME",
    "packageNameMatches": "PACKAGE_NAME_REGEX",
    "resourceId": "RESOURCE_ID",
    "resourceIdMatches": "RESOURCE_ID_REGEX",
    "index": "INDEX",
    "instance": "INSTANCE",
}


def describe_selector(selector: dict[str, Any]) -> str:
    """Java's UiSelector.toString(), roughly: UiSelector[TEXT=x, INSTANCE=0]."""
    parts = [f"{_JAVA_NAMES.get(k, k.upper())}={v}" for k, v in _fields(selector).items()]
    return f"UiSelector[{', '.join(parts)}]"


@dataclass(frozen=True)
class ObjectRef:
    """A UiObject the server handed out by id: found again on every use (as UiObject does)
    from its selector, then `steps` from the first match: ("up", {}) to the parent,
    ("child", selector) into its subtree, ("sibling", selector) into its parent's."""

    selector: dict[str, Any]
    steps: tuple[tuple[str, dict[str, Any]], ...] = ()

    def then(self, step: str, selector: dict[str, Any]) -> ObjectRef:
        return ObjectRef(self.selector, (*self.steps, (step, selector)))


def resolve(roots: list[UiNode], ref: ObjectRef) -> list[UiNode]:
    """The nodes `ref` names now (each step starts from the first match of the one before)."""
    flat = _flatten(roots)
    current = _match(flat, ref.selector)
    for step, sub in ref.steps:
        if not current:
            break
        first = current[0]
        if step == "up":
            parent = flat[first].parent
            current = [parent] if parent >= 0 else []
        elif step == "child":
            current = _select(flat, _descendants(flat, first), sub)
        else:  # sibling: the parent's other descendants
            current = _select(flat, _siblings(flat, first), sub)
    return [flat[i].node for i in current]


def field_selector(by: str, value: str) -> dict[str, Any]:
    """A one-field selector dict, with its mask, as uiautomator2's Selector builds it."""
    return {by: value, "mask": MASK_BITS[by], "childOrSibling": [], "childOrSiblingSelector": []}


def chain(
    base: dict[str, Any], relation: str, sub: dict[str, Any], instance: int | None = None
) -> dict[str, Any]:
    """`base` narrowed to its children (or siblings) matching `sub` (its n-th match)."""
    sub = dict(sub)
    if instance is not None:
        sub["instance"] = instance
        sub["mask"] = int(sub.get("mask", 0) or 0) | MASK_BITS["instance"]
    out = dict(base)
    out["childOrSibling"] = [*(base.get("childOrSibling") or []), relation]
    out["childOrSiblingSelector"] = [*(base.get("childOrSiblingSelector") or []), sub]
    return out
