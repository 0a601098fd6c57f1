"""Corpora (JSONL, one document per line; docs/corpus.md) and the study's chunking."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._api import Document, QAPair
from ._errors import CorpusError


def load_corpus(path: Path) -> list[Document]:
    """Read and check a corpus file; every problem names the file and line."""
    if not path.is_file():
        raise CorpusError(
            f"corpus file {path} does not exist. Point [tasks] documents at a registered "
            "corpus name or an existing JSONL file (docs/corpus.md)."
        )
    docs: list[Document] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). Each line "
                    "must be one JSON object (docs/corpus.md)."
                ) from None
            doc = _document(obj, where)
            if doc.id in seen:
                raise CorpusError(
                    f"{where}: document id {doc.id!r} was already used on line {seen[doc.id]}. "
                    "Give each document its own id."
                )
            seen[doc.id] = lineno
            docs.append(doc)
    if not docs:
        raise CorpusError(f"{path}: the corpus has no documents. Add one JSON object per line.")
    return docs


def _document(obj: Any, where: str) -> Document:
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
    for key in ("id", "text"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise CorpusError(f"{where}: field {key!r} is missing or not a non-empty string.")
    for key in ("title", "genre", "summary"):
        if key in obj and not isinstance(obj[key], str):
            raise CorpusError(f"{where}: field {key!r} must be a string.")
    questions = obj.get("questions", [])
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise CorpusError(f"{where}: field 'questions' must be a list of strings.")
    qa_raw = obj.get("qa", [])
    if not isinstance(qa_raw, list):
        raise CorpusError(f"{where}: field 'qa' must be a list of {{question, answer}} objects.")
    qa = []
    for i, pair in enumerate(qa_raw):
        if not (
            isinstance(pair, dict)
            and isinstance(pair.get("question"), str)
            and isinstance(pair.get("answer"), str)
        ):
            raise CorpusError(
                f"{where}: qa[{i}] must be an object with string fields 'question' and 'answer'."
            )
        qa.append(QAPair(pair["question"], pair["answer"]))
    return Document(
        id=obj["id"],
        text=obj["text"],
        title=obj.get("title", ""),
        genre=obj.get("genre", ""),
        summary=obj.get("summary", ""),
        questions=tuple(questions),
        qa=tuple(qa),
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a corpus, at its line (0: the file as a whole)."""

    line: int
    doc_id: str
    message: str

    def __str__(self) -> str:
        doc = f"document {self.doc_id!r}: " if self.doc_id else ""
        return f"{self.line}: {doc}{self.message}" if self.line else self.message


def validate_corpus(
    path: Path,
    *,
    min_questions: int = 3,
    min_qa: int = 3,
    min_tokens: int = 0,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[list[Document], list[Problem]]:
    """Check a corpus for use with every task and quality metric; report every problem.

    Unlike :func:`load_corpus`, which stops at the first problem, this reads the whole file
    and returns the documents it could read with each problem found, line by line: broken
    JSON or fields, repeated ids, and references the tasks and metrics need (a summary, at
    least ``min_questions`` questions, ``min_qa`` question-answer pairs). With
    ``count_tokens`` (a model's tokenizer) it also checks each text has ``min_tokens``.
    """
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist. Check the path.")
    docs: list[Document] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        lines = list(enumerate(fh, 1))
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(lineno, "", f"not valid JSON ({exc.msg} at column {exc.colno})")
            )
            continue
        try:
            doc = _document(obj, f"line {lineno}")
        except CorpusError as exc:
            message = str(exc).removeprefix(f"line {lineno}: ")
            doc_id = obj.get("id", "") if isinstance(obj, dict) else ""
            problems.append(Problem(lineno, doc_id if isinstance(doc_id, str) else "", message))
            continue
        found = len(problems)
        if doc.id in seen:
            problems.append(
                Problem(
                    lineno, doc.id, f"id already used on line {seen[doc.id]}; ids must be unique"
                )
            )
        seen.setdefault(doc.id, lineno)
        problems += [
            Problem(lineno, doc.id, m) for m in _reference_problems(doc, min_questions, min_qa)
        ]
        if count_tokens is not None and min_tokens:
            n = count_tokens(doc.text)
            if n < min_tokens:
                problems.append(
                    Problem(
                        lineno, doc.id, f"text has {n} tokens; at least {min_tokens} are needed"
                    )
                )
        if len(problems) == found:
            docs.append(doc)
    if not seen and not problems:
        problems.append(Problem(0, "", f"{path}: the corpus has no documents"))
    return docs, problems


def _reference_problems(doc: Document, min_questions: int, min_qa: int) -> list[str]:
    out = []
    if not doc.summary.strip():
        out.append("no 'summary' (SUMM and its quality metrics compare with it)")
    questions = [q for q in doc.questions if q.strip()]
    if len(questions) < min_questions:
        out.append(f"{len(questions)} reference 'questions', at least {min_questions} needed (QS)")
    if len(questions) != len(doc.questions):
        out.append("'questions' has an empty string")
    good_qa = [p for p in doc.qa if p.question.strip() and p.answer.strip()]
    if len(good_qa) < min_qa:
        out.append(f"{len(good_qa)} complete 'qa' pairs, at least {min_qa} needed (QA)")
    if len(good_qa) != len(doc.qa):
        out.append("'qa' has a pair with an empty question or answer")
    return out


@dataclass(frozen=True)
class Sections:
    """A document's first ``count * size`` tokens cut into ``count`` sections of ``size``."""

    doc_id: str
    size: int
    tokens: tuple[tuple[int, ...], ...]

    def context_tokens(self, length: int) -> list[int]:
        """The tokens of the first ``length / size`` sections."""
        k = length // self.size
        return [t for section in self.tokens[:k] for t in section]


def cut_sections(doc_id: str, tokens: Sequence[int], count: int, size: int) -> Sections:
    """Cut ``tokens`` into ``count`` sections of exactly ``size`` tokens each."""
    need = count * size
    if len(tokens) < need:
        raise CorpusError(
            f"document {doc_id!r} has {len(tokens)} tokens in this model's tokenizer, but the "
            f"scenario needs {need} ({count} sections of {size}). Use a longer document, or "
            "lower [context] lengths."
        )
    return Sections(
        doc_id=doc_id,
        size=size,
        tokens=tuple(tuple(tokens[i * size : (i + 1) * size]) for i in range(count)),
    )
