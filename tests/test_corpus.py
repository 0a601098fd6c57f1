from __future__ import annotations

import json
from pathlib import Path

import pytest

from devicelab._corpus import cut_sections, load_corpus
from devicelab._errors import CorpusError


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"id": "a", "text": "some text", "qa": [{"question": "q", "answer": "a"}]})


def test_loads_documents_with_optional_fields(tmp_path: Path) -> None:
    extra = json.dumps({"id": "b", "text": "t", "title": "T", "questions": ["x?"], "summary": "s"})
    docs = load_corpus(_write(tmp_path, [GOOD, "", extra]))
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].qa[0].answer == "a"
    assert docs[1].questions == ("x?",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"c.jsonl:2: not valid JSON"),
        (json.dumps({"text": "t"}), r"c.jsonl:2: field 'id' is missing"),
        (json.dumps({"id": "x", "text": ""}), r"c.jsonl:2: field 'text'"),
        (json.dumps({"id": "x", "text": "t", "qa": [{"question": "q"}]}), r"c.jsonl:2: qa\[0\]"),
        (json.dumps({"id": "x", "text": "t", "questions": "q?"}), r"c.jsonl:2: field 'questions'"),
        (
            json.dumps({"id": "a", "text": "t"}),
            r"c.jsonl:2: document id 'a' was already used on line 1",
        ),
        ("[1, 2]", r"c.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_lines_are_named_by_line_number(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_corpus(_write(tmp_path, [GOOD, line]))


def test_missing_and_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "none.jsonl")
    with pytest.raises(CorpusError, match="no documents"):
        load_corpus(_write(tmp_path, [""]))


def test_sections_have_exactly_the_section_size() -> None:
    tokens = list(range(1234))
    sec = cut_sections("d", tokens, count=5, size=200)
    assert [len(s) for s in sec.tokens] == [200] * 5
    assert sec.context_tokens(600) == list(range(600))
    assert sec.context_tokens(1000) == list(range(1000))


def test_too_short_document_names_its_token_count() -> None:
    with pytest.raises(CorpusError, match=r"document 'd' has 999 tokens.*needs 1000"):
        cut_sections("d", list(range(999)), count=5, size=200)
