"""The README's scenario table is what the declared tables generate."""

from __future__ import annotations

from pathlib import Path

from devicelab._scenario import TABLES
from devicelab._scenariodoc import COMMAND, current, main, render

ROOT = Path(__file__).resolve().parents[1]


def test_readme_scenario_table_is_regenerated() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert current(readme) == render(), (
        f"README.md's scenario table is not what devicelab/_scenario.py declares. "
        f"Regenerate it: `{COMMAND}`"
    )


def test_table_lists_every_declared_key_with_its_default() -> None:
    text = render()
    for name, table in TABLES.items():
        row = next(
            line
            for line in text.splitlines()
            if line.startswith(f"| `[{'[' * (name == 'models')}{name}]")
        )
        for key in table.model_fields:
            assert f"`{key}` (" in row
    assert "`repetitions` (3; " in text and '`order` ("sequential";' in text
    assert "`name` (required; shown in reports)" in text


def test_regeneration_command_rewrites_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    stale = render().replace("`repetitions` (3; ", "`repetitions` (4; ")
    readme.write_text(f"# Title\n\nbefore\n\n{stale}\n\nafter\n", encoding="utf-8")
    main([str(readme)])
    assert readme.read_text(encoding="utf-8") == f"# Title\n\nbefore\n\n{render()}\n\nafter\n"
