"""Corpora (JSONL, one document per line; docs/corpus.md) and the study's chunking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import Document, QAPair
from .errors import CorpusError


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
