"""docs/writing-plugins.md shows the example plugin's real files, so its code is tested."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "devicelab-example"
LISTING = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.S | re.M)


def test_guide_listings_are_the_example_files() -> None:
    guide = (ROOT / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    listings = LISTING.findall(guide)
    assert {path for path, _ in listings} >= {"pyproject.toml", "devicelab_example/__init__.py"}
    for path, text in listings:
        assert text == (EXAMPLE / path).read_text(encoding="utf-8"), (
            f"docs/writing-plugins.md shows {path} differently from examples/devicelab-example/"
            f"{path}; copy the file into the guide's listing."
        )
