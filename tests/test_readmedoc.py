"""The README's generated blocks (scenario keys, record keys) are what the code declares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devicelab import Identity, TrialRecord
from devicelab._readmedoc import (
    BLOCKS,
    COMMAND,
    RECORD_KEYS,
    SCENARIO_KEYS,
    begin,
    current,
    end,
    main,
    record_keys,
    render,
)
from devicelab._scenario import TABLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("block", list(BLOCKS))
def test_readme_block_is_regenerated(block: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert current(readme, block) == render(block), (
        f"README.md's {block} are not what the code declares. Regenerate them: `{COMMAND}`"
    )


def test_table_lists_every_declared_key_with_its_default() -> None:
    text = render(SCENARIO_KEYS)
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


def test_record_keys_are_the_json_records_keys_in_order() -> None:
    who = Identity("r", "t", "host", "words", "m", "q", "SUMM", "d", "i", 10, 1, 0, False)
    record = TrialRecord(who).to_json()
    assert record_keys() == list(record)
    # Every part of the typed record shows up, as a user reads trials.jsonl.
    for part in (Identity, *(type(getattr(TrialRecord(who), p)) for p in ("measures", "tries"))):
        assert {f.name for f in dataclasses.fields(part)} <= set(record_keys())
    text = render(RECORD_KEYS)
    assert text.startswith(begin(RECORD_KEYS)) and text.endswith(end(RECORD_KEYS))
    assert "`run_id`, `trial_id`, `status`" in text
    assert all(len(line) <= 100 for line in text.splitlines()[1:-1])


def test_regeneration_command_rewrites_only_the_blocks(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    stale_table = render(SCENARIO_KEYS).replace("`repetitions` (3; ", "`repetitions` (4; ")
    stale_keys = f"{begin(RECORD_KEYS)}\nTrial records carry `run_id`.\n{end(RECORD_KEYS)}"
    readme.write_text(f"# T\n\n{stale_table}\n\nmid\n\n{stale_keys}\n\nafter\n", encoding="utf-8")
    main([str(readme)])
    assert readme.read_text(encoding="utf-8") == (
        f"# T\n\n{render(SCENARIO_KEYS)}\n\nmid\n\n{render(RECORD_KEYS)}\n\nafter\n"
    )


def test_a_readme_without_a_block_is_told_where_the_markers_go(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{render(SCENARIO_KEYS)}\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no generated record keys"):
        main([str(readme)])
    assert readme.read_text(encoding="utf-8") == f"# T\n\n{render(SCENARIO_KEYS)}\n"
