from __future__ import annotations

import pytest
from devicelab_docassist import CORPORA, INTENTS, AnswerQuestion, SuggestQuestions, Summarize
from devicelab_llamacpp import smollm2_path

from devicelab._corpus import load_corpus

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


def test_prompts_carry_their_references() -> None:
    doc = load_corpus(CORPUS)[0]
    [summ] = Summarize().prompts(doc, "C")
    [qs] = SuggestQuestions().prompts(doc, "C")
    qa = AnswerQuestion().prompts(doc, "C")
    assert summ.references == (doc.summary,)
    assert qs.references == doc.questions
    assert [p.references for p in qa] == [(pair.answer,) for pair in doc.qa]


@pytest.mark.parametrize(
    ("output", "text", "intent_ok", "format_ok"),
    [
        ("<intent>: summarization\n<response>The port grew.</response>", "The port grew.", 1, 1),
        # Different case and spacing, no angle brackets on the intent: still read.
        ("Intent :  Summarization\n< RESPONSE >The port grew.</Response >", "The port grew.", 1, 1),
        ("<intent>: summarization\n<response>The port grew", "The port grew", 1, 0),  # cut off
        (
            "<intent>: question_answering\n<response>The port grew.</response>",
            "The port grew.",
            0,
            1,
        ),
        ("The port grew.", "The port grew.", 0, 0),  # no format at all: the whole reply
        ("<intent>: summarization\nThe port grew.", "The port grew.", 1, 0),
    ],
)
def test_summary_replies_are_read_leniently(
    output: str, text: str, intent_ok: int, format_ok: int
) -> None:
    task = Summarize()
    [prompt] = task.prompts(load_corpus(CORPUS)[0], "C")
    response = task.response(prompt, output)
    assert (response.text, response.items) == (text, (text,))
    assert task.score(prompt, output) == {"intent_ok": intent_ok, "format_ok": format_ok}


def test_suggested_questions_are_split_by_lines_numbering_and_bullets() -> None:
    task = SuggestQuestions()
    [prompt] = task.prompts(load_corpus(CORPUS)[0], "C")
    output = (
        "<intent>: question suggestion\n<response>\n1. Who chairs the sync?\n"
        "2) When is the pilot over?\n\n- What does a berth cost? Is there a discount?\n"
        "• Why did the signs fade?\n</response>"
    )
    response = task.response(prompt, output)
    assert response.intent == "question_suggestion"
    assert response.items == (
        "Who chairs the sync?",
        "When is the pilot over?",
        "What does a berth cost?",
        "Is there a discount?",
        "Why did the signs fade?",
    )
    assert task.score(prompt, output) == {"intent_ok": 1.0, "format_ok": 1.0}
    assert task.response(prompt, "<response></response>").items == ()


def test_answers_and_references_reach_the_quality_metrics() -> None:
    # A QA reply scored with the real metrics: the reply that repeats the reference answer
    # scores 1, a wrong one less.
    from devicelab_quality import Bleu

    from devicelab import Scored

    task = AnswerQuestion()
    prompt = task.prompts(load_corpus(CORPUS)[0], "C")[0]
    bleu = Bleu(Bleu.Options())

    def score(output: str) -> float:
        items = task.response(prompt, output).items
        return bleu.score(Scored("QA", items, prompt.references))["bleu"]

    answer = prompt.references[0]
    right = score(f"<intent>: question_answering\n<response>{answer}</response>")
    wrong = score("<intent>: question_answering\n<response>Nobody knows.</response>")
    assert right == pytest.approx(1.0) and wrong < 0.5
