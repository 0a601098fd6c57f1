"""devicelab corpus validate: every problem of a user's corpus, each with its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab._corpus import validate_corpus

SHIPPED = (
    Path(__file__).resolve().parents[1]
    / "plugins"
    / "devicelab_docassist"
    / "corpora"
    / "docassist-mini.jsonl"
)


def _doc(doc_id: str, **fields: object) -> str:
    base: dict[str, object] = {
        "id": doc_id,
        "text": "A text.",
        "summary": "A summary.",
        "questions": ["One?", "Two?", "Three?"],
        "qa": [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(3)],
    }
    base.update(fields)
    return json.dumps(base)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            _doc("good"),
            "{broken",
            _doc("no-refs", summary="", questions=["Only?"], qa=[]),
            _doc("good"),
            _doc("half-qa", qa=[{"question": "Q?", "answer": ""}] * 3),
            json.dumps({"id": "no-text"}),
        ],
    )
    docs, problems = validate_corpus(path)
    found = [(p.line, p.doc_id, p.message) for p in problems]
    assert [d.id for d in docs] == ["good"]
    assert (
        2,
        "",
        "not valid JSON (Expecting property name enclosed in double quotes at column 2)",
    ) in found
    lines_3 = [m for line, _, m in found if line == 3]
    assert any("'summary'" in m for m in lines_3)
    assert any("1 reference 'questions', at least 3" in m for m in lines_3)
    assert any("0 complete 'qa' pairs" in m for m in lines_3)
    assert (4, "good", "id already used on line 1; ids must be unique") in found
    assert any(line == 5 and "empty question or answer" in m for line, _, m in found)
    assert any(line == 6 and "'text'" in m for line, _, m in found)


def test_token_lengths_are_checked_with_the_given_tokenizer(tmp_path: Path) -> None:
    path = _write(tmp_path, [_doc("short", text="one two three"), _doc("long", text="w " * 50)])
    _, problems = validate_corpus(path, min_tokens=10, count_tokens=lambda text: len(text.split()))
    assert [(p.doc_id, p.message) for p in problems] == [
        ("short", "text has 3 tokens; at least 10 are needed")
    ]


def test_cli_exits_1_and_prints_file_line_and_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [_doc("a"), _doc("b", questions=[])])
    assert run_cli(["corpus", "validate", str(path), "--min-qa", "2"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: document 'b': 0 reference 'questions', at least 3 needed (QS)" in out
    assert "1 problems; 1 documents are fine" in out


def test_cli_clean_corpus_exits_0_and_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["corpus", "validate", str(_write(tmp_path, [_doc("a")]))]) == 0
    assert "1 documents" in capsys.readouterr().out
    assert run_cli(["corpus", "validate", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.e2e
def test_shipped_corpus_meets_the_study_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """24+ original documents, each 1,100+ SmolLM2 tokens with full references."""
    code = run_cli(["corpus", "validate", str(SHIPPED), "--model", "smollm2-135m-instruct"])
    out = capsys.readouterr().out
    assert code == 0, out
    docs, _ = validate_corpus(SHIPPED)
    assert len(docs) >= 24
    assert len({d.genre for d in docs}) == len(docs)


def test_unknown_tokenizer_model_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [_doc("a")])
    assert run_cli(["corpus", "validate", str(path), "--model", "nope"]) == 2
    assert "registered models: " in capsys.readouterr().err
