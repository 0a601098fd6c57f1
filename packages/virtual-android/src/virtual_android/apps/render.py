"""The picture on the virtual S24's display, drawn from the same windows uiautomator dumps.

`draw_windows` (behind u2server.render_screen) draws what `screencap`, uiautomator2's
`takeScreenshot` and the `framebuffer:` service show: each window's views at their bounds,
with the look of the app that owns them (wallpaper and icons on the launcher, Material
colours in MLCChat, a teal app bar in DocAssist, the status bar's clock and battery), so a
person looking at a screenshot recognises the screen. Layout-only containers draw nothing;
text is wrapped inside its view and clipped to it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from .ui import LAUNCHER_PACKAGE, STATUS_BAR_HEIGHT, SYSTEMUI_PACKAGE, UiNode, Window

__all__ = ["Theme", "draw_windows", "theme_of"]

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Theme:
    """An app's colours: window background, text, accent (buttons), status bar."""

    background: RGB
    text: RGB
    accent: RGB
    on_accent: RGB
    status_bar: RGB
    status_text: RGB
    field: RGB  # the fill of an edit box


_LAUNCHER = Theme(
    (22, 36, 71), (255, 255, 255), (255, 255, 255), (0, 0, 0), (22, 36, 71), (255, 255, 255),
    (255, 255, 255),
)  # fmt: skip
_THEMES: dict[str, Theme] = {
    # MLC-LLM's Compose app: Material 3 baseline colours.
    "ai.mlc.mlcchat": Theme(
        (255, 251, 254), (28, 27, 31), (103, 80, 164), (255, 255, 255), (255, 251, 254),
        (28, 27, 31), (231, 224, 236),
    ),
    # DocAssist: a classic View app with a teal app bar.
    "ai.devicelab.docassist": Theme(
        (250, 250, 250), (33, 33, 33), (0, 121, 107), (255, 255, 255), (0, 96, 86),
        (255, 255, 255), (255, 255, 255),
    ),
}  # fmt: skip
_DEFAULT = Theme(
    (255, 255, 255), (33, 33, 33), (26, 115, 232), (255, 255, 255), (240, 240, 240),
    (33, 33, 33), (245, 245, 245),
)  # fmt: skip
_BODY_PX = 42  # 16 sp at 416 dpi
_ICON_COLOURS: tuple[RGB, ...] = (
    (52, 168, 83), (66, 133, 244), (234, 67, 53), (251, 188, 5), (103, 80, 164),
    (0, 150, 136), (255, 112, 67), (96, 125, 139),
)  # fmt: skip


def theme_of(package: str) -> Theme:
    if package == LAUNCHER_PACKAGE:
        return _LAUNCHER
    return _THEMES.get(package, _DEFAULT)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Font:
    # Pillow ships a scalable font (used when FreeType is there, as in its wheels).
    return ImageFont.load_default(size=size)


def _text_width(font: Font, text: str) -> float:
    return float(font.getlength(text))


def _wrap(text: str, font: Font, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if _text_width(font, candidate) <= width or not line:
                line = candidate
                while _text_width(font, line) > width and len(line) > 1:  # one long word
                    cut = max(1, int(len(line) * width / max(1.0, _text_width(font, line))))
                    lines.append(line[:cut])
                    line = line[cut:]
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _draw_text(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    colour: RGB,
    size: int = _BODY_PX,
    centre: bool = False,
    hidden_above: int = 0,
) -> None:
    left, top, right, bottom = box
    size = max(12, min(size, int((bottom - top) * 0.7)))
    pad = 8 if not centre else 0
    while True:  # shrink a short text until it fits its view (a long one is clipped)
        font = _font(size)
        line_h = int(size * 1.25)
        lines = _wrap(text, font, max(1, right - left - 2 * pad))
        total = line_h * len(lines)
        if total <= bottom - top or size <= 28 or len(lines) > 3:
            break
        size -= 4
    if hidden_above:  # scrolled: the text starts above the visible part of its view
        y = top + pad - hidden_above
    else:
        y = top + (max(0, (bottom - top - total) // 2) if centre or total < line_h * 2 else pad)
    for line in lines:
        if y + size > bottom:
            break
        if y < top:
            y += line_h
            continue
        x = left + pad
        if centre:
            x = left + max(0, int((right - left - _text_width(font, line)) / 2))
        draw.text((x, y), line, fill=colour, font=font)
        y += line_h


def _icon_colour(label: str) -> RGB:
    digest = hashlib.md5(label.encode()).digest()
    return _ICON_COLOURS[digest[0] % len(_ICON_COLOURS)]


def _draw_glyph(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], name: str) -> None:
    """The icon of an image button, from its content description."""
    left, top, right, bottom = box
    cx, cy = (left + right) // 2, (top + bottom) // 2
    r = max(6, min(right - left, bottom - top) // 4)
    white = (255, 255, 255)
    if "back" in name:
        draw.polygon([(cx - r, cy), (cx + r // 2, cy - r), (cx + r // 2, cy + r)], fill=white)
    elif "reset" in name or "refresh" in name:
        draw.arc((cx - r, cy - r, cx + r, cy + r), 40, 340, fill=white, width=max(3, r // 4))
    else:  # send, start: a forward arrow
        draw.polygon([(cx + r, cy), (cx - r // 2, cy - r), (cx - r // 2, cy + r)], fill=white)


def _draw_node(
    draw: ImageDraw.ImageDraw, node: UiNode, window: Window, theme: Theme, in_list: bool
) -> None:
    left, top, right, bottom = node.bounds
    if right <= left or bottom <= top:
        return
    box = (left, top, right - 1, bottom - 1)
    kind = node.class_name.rsplit(".", 1)[-1]
    if window.package == LAUNCHER_PACKAGE and node.resource_id.endswith(":id/icon"):
        size = min(right - left, bottom - top) // 2
        cx = (left + right) // 2
        icon = (cx - size // 2, top + 20, cx + size // 2, top + 20 + size)
        draw.rounded_rectangle(icon, radius=size // 3, fill=_icon_colour(node.text))
        initial = (node.text or "?")[:1].upper()
        _draw_text(draw, icon, initial, (255, 255, 255), size=size // 2, centre=True)
        _draw_text(draw, (left, icon[3] + 10, right, bottom), node.text, theme.text, 34, True)
        return
    if kind == "Toast":
        draw.rounded_rectangle(box, radius=(bottom - top) // 2, fill=(50, 50, 50))
        _draw_text(draw, box, node.text, (255, 255, 255), 38, centre=True)
        return
    if kind in ("Button", "ImageButton") or (node.clickable and not node.text and kind == "View"):
        fill = theme.accent if node.enabled else (200, 200, 200)
        draw.rounded_rectangle(box, radius=min(40, (bottom - top) // 2), fill=fill)
        if node.text:
            _draw_text(draw, box, node.text, theme.on_accent, 40, centre=True)
        else:
            _draw_glyph(draw, box, node.content_desc)
        return
    if kind == "EditText":
        draw.rounded_rectangle(box, radius=16, fill=theme.field, outline=theme.accent, width=3)
        showing_hint = bool(node.hint) and node.text == node.hint
        colour = (140, 140, 140) if showing_hint else theme.text
        _draw_text(draw, (left + 12, top + 6, right - 12, bottom - 6), node.text, colour)
        return
    if node.text and in_list and kind == "TextView":  # a chat message: a bubble
        draw.rounded_rectangle(box, radius=28, fill=theme.field)
        inner = (left + 16, top + 12, right - 16, bottom - 8)
        _draw_text(draw, inner, node.text, theme.text, hidden_above=node.hidden_above)
        return
    if node.text:
        # The title at the top of a window reads larger.
        title = node.resource_id.endswith(":id/title") or (
            top - STATUS_BAR_HEIGHT < 60 and len(node.text) <= 48
        )
        size = 56 if title else _BODY_PX
        _draw_text(draw, box, node.text, theme.text, size, hidden_above=node.hidden_above)


def _draw_status_bar(draw: ImageDraw.ImageDraw, window: Window, theme: Theme) -> None:
    left, top, right, bottom = window.root.bounds
    draw.rectangle((left, top, right - 1, bottom - 1), fill=theme.status_bar)
    for node in window.root.walk():
        if node.text and node is not window.root:
            _draw_text(draw, node.bounds, node.text, theme.status_text, 40, centre=True)


def _draw_wallpaper(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    draw = ImageDraw.Draw(image)
    height = max(1, bottom - top)
    for y in range(top, bottom, 4):  # a vertical gradient, in bands
        t = (y - top) / height
        colour = (int(22 + 70 * t), int(36 + 30 * t), int(71 + 70 * t))
        draw.rectangle((left, y, right - 1, y + 3), fill=colour)


def draw_windows(windows: list[Window], size: tuple[int, int]) -> Image.Image:
    """Windows (bottom to top, as DeviceScreen.windows() lists them) as an RGBA picture."""
    width, height = size
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    draw = ImageDraw.Draw(image)
    below = windows[0].package if windows else ""
    for window in windows:
        if window.package == SYSTEMUI_PACKAGE and window.activity == "StatusBar":
            _draw_status_bar(draw, window, theme_of(below))
            continue
        theme = theme_of(window.package)
        if window.activity != "Toast":
            if window.package == LAUNCHER_PACKAGE:
                _draw_wallpaper(image, window.root.bounds)
            else:
                left, top, right, bottom = window.root.bounds
                draw.rectangle((left, top, right - 1, bottom - 1), fill=theme.background)
        stack: list[tuple[UiNode, bool]] = [(window.root, False)]
        while stack:
            node, in_list = stack.pop()
            _draw_node(draw, node, window, theme, in_list)
            if node.resource_id.endswith(":id/icon") and window.package == LAUNCHER_PACKAGE:
                continue
            is_list = node.scrollable and node.class_name != "android.widget.ScrollView"
            stack.extend((child, is_list) for child in reversed(node.children))
    return image
