from __future__ import annotations

import pytest
from devicelab_docassist import CORPORA, INTENTS, AnswerQuestion, SuggestQuestions, Summarize
from devicelab_llamacpp import smollm2_path

from devicelab.corpus import load_corpus

CORPUS = CORPORA / "docassist-mini.jsonl"


def test_prompts_follow_the_study_layout() -> None:
    [doc] = [d for d in load_corpus(CORPUS)][:1]
    for task in (Summarize(), SuggestQuestions(), AnswerQuestion()):
        prompt = task.prompts(doc, "CONTEXT")[0]
        system, user = prompt.messages
        assert system.role == "system" and "<response>" in system.content
        assert all(intent in system.content for intent in INTENTS.values())
        assert user.content.startswith("<document>\nCONTEXT\n</document>\n\n<request>\n")
        assert user.content.endswith("\n</request>")
    qa = AnswerQuestion().prompts(doc, "C")
    assert [p.item for p in qa] == [f"qa{i}" for i in range(len(doc.qa))]
    assert doc.qa[0].question in qa[0].messages[1].content


def test_corpus_has_enough_varied_documents_with_questions() -> None:
    docs = load_corpus(CORPUS)
    assert len(docs) >= 8
    assert len({d.genre for d in docs}) == len(docs)
    for d in docs:
        assert len(d.qa) >= 2 and d.summary and len(d.questions) >= 3


def test_every_document_is_at_least_1100_smollm2_tokens() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)
    for d in load_corpus(CORPUS):
        n = len(llm.tokenize(d.text.encode(), add_bos=False))
        assert n >= 1100, f"{d.id} has only {n} tokens"


def test_prompts_carry_their_parts_for_app_engines() -> None:
    doc = load_corpus(CORPUS)[0]
    [qa0, *_] = AnswerQuestion().prompts(doc, "CTX")
    assert qa0.fields == {
        "system": qa0.messages[0].content,
        "document": "CTX",
        "request": doc.qa[0].question,
    }
