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


def test_each_prompt_has_a_completion_form_for_base_models() -> None:
    doc = load_corpus(CORPUS)[0]
    summ = Summarize().prompts(doc, "CONTEXT")[0]
    assert summ.completion == f"Document:\nCONTEXT\n\n{Summarize.request}\nSummary:"
    assert "\n\n" in summ.stop and "Document:" in summ.stop
    qs = SuggestQuestions().prompts(doc, "CONTEXT")[0]
    assert qs.completion.endswith("\nQuestions:") and "\n" not in qs.stop  # a line per question
    qa = AnswerQuestion().prompts(doc, "CONTEXT")[0]
    assert qa.completion == f"Document:\nCONTEXT\n\nQuestion: {doc.qa[0].question}\nAnswer:"
    assert "\n" in qa.stop and "Question:" in qa.stop
    # Neither the tags nor the intent line are asked of a base model.
    for prompt in (summ, qs, qa):
        assert "<" not in prompt.completion.replace("CONTEXT", "")


CONTEXT = "The harbour pilot ran for six weeks and took 12 bookings from ferry operators."


@pytest.mark.parametrize(
    ("output", "text"),
    [
        # A chat model that repeats the user message before its answer.
        (
            f"<document>\n{CONTEXT}\n</document>\n\n<request>\n{Summarize.request}\n"
            "</request>\nThe pilot was a success.",
            "The pilot was a success.",
        ),
        # A base model that repeats the completion prompt, and then only part of the document.
        (f"Document:\n{CONTEXT}\n\nSummary: It worked.", "It worked."),
        ("The harbour pilot ran for six weeks. It was busy.", "It was busy."),
        # Only an echo: nothing the model wrote is left to score.
        (f"\n{CONTEXT}", ""),
        # An answer that starts as the document does for fewer than four words is kept.
        ("The harbour grew busier.", "The harbour grew busier."),
        ("A six-week pilot with 12 bookings.", "A six-week pilot with 12 bookings."),
    ],
)
def test_an_untagged_answer_loses_its_echo_of_the_prompt(output: str, text: str) -> None:
    task = Summarize()
    [prompt] = task.prompts(load_corpus(CORPUS)[0], CONTEXT)
    assert task.response(prompt, output).text == text
    # No tags, no intent line: the format was not followed, whatever the answer's quality.
    assert task.score(prompt, output) == {"intent_ok": 0.0, "format_ok": 0.0}


def test_a_tagged_answer_is_read_as_written_even_if_it_repeats_the_document() -> None:
    task = Summarize()
    [prompt] = task.prompts(load_corpus(CORPUS)[0], CONTEXT)
    output = f"<intent>: summarization\n<response>{CONTEXT}</response>"
    assert task.response(prompt, output).text == CONTEXT


def test_a_base_models_answer_to_a_question_is_scored_on_its_own_text() -> None:
    task = AnswerQuestion()
    prompt = task.prompts(load_corpus(CORPUS)[0], CONTEXT)[0]
    question = prompt.fields["request"]
    output = f"Question: {question}\nAnswer: 12 bookings"
    assert task.response(prompt, output).text == "12 bookings"
    assert task.response(prompt, " 12 bookings").items == ("12 bookings",)
    assert task.score(prompt, " 12 bookings") == {"intent_ok": 0.0, "format_ok": 0.0}


@pytest.mark.parametrize(
    ("line", "intent"),
    [
        ("<intent>: summarization", "summarization"),
        ("<intent>: Question-Answering", "question_answering"),
        ("intent: summarization of the document", "summarization"),
        ("<intent>: summarizations", "summarizations"),  # not the intent's name
        ("<intent>: TASK", "task"),  # the system prompt's placeholder, echoed
    ],
)
def test_the_intent_line_is_read_leniently_but_must_name_a_task(line: str, intent: str) -> None:
    task = Summarize()
    [prompt] = task.prompts(load_corpus(CORPUS)[0], CONTEXT)
    response = task.response(prompt, f"{line}\n<response>x</response>")
    assert response.intent == intent
    assert task.score(prompt, f"{line}\n<response>x</response>")["intent_ok"] == float(
        intent == "summarization"
    )
