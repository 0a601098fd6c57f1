"""The KW task on its own: prompts, keyword parsing and its metric. No model needed."""

from __future__ import annotations

import pytest
from devicelab_example import Keywords, parse_keywords

from devicelab import Document

DOC = Document("d1", "The lighthouse keeper logged storms, ships and fog at Cape Wrath.")


def test_one_prompt_asking_for_five_keywords_of_the_context() -> None:
    [prompt] = Keywords().prompts(DOC, "The lighthouse keeper logged storms")
    assert prompt.item == "keywords"
    assert "5 keywords" in prompt.messages[-1].content
    assert "The lighthouse keeper logged storms" in prompt.messages[-1].content
    assert prompt.fields["document"] == "The lighthouse keeper logged storms"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("storms, ships, fog", ["storms", "ships", "fog"]),
        ("1. Lighthouse\n2. Storms\n- Fog.", ["Lighthouse", "Storms", "Fog"]),
        ('"a"; "b"; c, d, e, f, g', ["a", "b", "c", "d", "e"]),
        ("", []),
    ],
)
def test_parse_keywords(output: str, expected: list[str]) -> None:
    assert parse_keywords(output) == expected


def test_score_counts_keywords_found_in_the_document_out_of_five() -> None:
    task = Keywords()
    [prompt] = task.prompts(DOC, DOC.text)
    assert task.score(prompt, "Lighthouse, STORMS, fog, volcano") == {
        "keywords_parsed": 4.0,
        "keywords_in_document": 3 / 5,
    }
    assert task.score(prompt, "") == {"keywords_parsed": 0.0, "keywords_in_document": 0.0}
