"""docs/hooks.md is the hookspecs, regenerated; and every hook has a test of its own."""

from __future__ import annotations

from pathlib import Path

from devicelab import _hookspecs as hookspecs
from devicelab._hookdoc import COMMAND, hook_names, render

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_hook_reference_is_regenerated() -> None:
    doc = ROOT / "docs" / "hooks.md"
    current = doc.read_text(encoding="utf-8") if doc.exists() else ""
    assert current == render(), (
        f"docs/hooks.md is not what devicelab/_hookspecs.py generates. Regenerate it: `{COMMAND}`"
    )


def test_reference_lists_every_hook() -> None:
    specs = {n for n in dir(hookspecs) if n.startswith("devicelab_")}
    assert set(hook_names()) == specs and len(specs) >= 7
    text = render()
    for name in specs:
        assert f"## `{name}`" in text and f"def {name}(" in text


def test_every_hook_has_a_test_of_its_own() -> None:
    """Each hook is named in at least one test module (test_*.py) other than this one."""
    tests = [p for p in TESTS.rglob("test_*.py") if p.resolve() != Path(__file__).resolve()]
    sources = [p.read_text(encoding="utf-8") for p in tests]
    untested = [name for name in hook_names() if not any(name in s for s in sources)]
    assert not untested, (
        f"hooks without a test: {', '.join(untested)}. Add a test under tests/ that "
        "exercises each through a plugin implementing it (see tests/test_plugin_manager.py)."
    )
