"""DocAssist tasks (SUMM, QS, QA) in the reference study's prompt layout, and its corpus.

The system message asks the model to name the intent on its first line and to put its answer
inside ``<response>...</response>``; the user message carries the document and the request
in tagged blocks. Quality scoring of these responses comes with the quality metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import devicelab
from devicelab import CorpusSpec, Document, Message, Task, TaskPrompt

CORPORA = Path(__file__).parent / "corpora"

SYSTEM_PROMPT = (
    "You are DocAssist, an assistant that analyses documents. The user gives you a document "
    "and a request. First decide which task the request asks for: summarization, "
    "question_suggestion or question_answering. Reply with a first line "
    "'<intent>: TASK' naming that task, then give your answer inside "
    "<response>...</response>. Use only the information in the document."
)

INTENTS = {"SUMM": "summarization", "QS": "question_suggestion", "QA": "question_answering"}


def user_message(context: str, request: str) -> str:
    return f"<document>\n{context}\n</document>\n\n<request>\n{request}\n</request>"


def _prompt(item: str, context: str, request: str, reference: str) -> TaskPrompt:
    return TaskPrompt(
        item,
        (Message("system", SYSTEM_PROMPT), Message("user", user_message(context, request))),
        reference,
        {"system": SYSTEM_PROMPT, "document": context, "request": request},
    )


class Summarize(Task):
    kind = "SUMM"
    description = "Summarise the document."
    request: ClassVar[str] = "Summarize the given document."

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        return [_prompt("summary", context, self.request, document.summary)]


class SuggestQuestions(Task):
    kind = "QS"
    description = "Suggest questions a reader might ask about the document."
    request: ClassVar[str] = (
        "Suggest 3 questions about the document that a reader might want answered."
    )

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        reference = "\n".join(document.questions)
        return [_prompt("questions", context, self.request, reference)]


class AnswerQuestion(Task):
    kind = "QA"
    description = "Answer a question about the document (one trial per qa pair used)."

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        return [
            _prompt(f"qa{i}", context, pair.question, pair.answer)
            for i, pair in enumerate(document.qa)
        ]


@devicelab.hookimpl
def devicelab_register_tasks(register: Callable[[Task], None]) -> None:
    register(Summarize())
    register(SuggestQuestions())
    register(AnswerQuestion())


@devicelab.hookimpl
def devicelab_register_corpora(register: Callable[[CorpusSpec], None]) -> None:
    register(
        CorpusSpec(
            "docassist-mini",
            CORPORA / "docassist-mini.jsonl",
            "Original documents in varied genres, with reference summaries, questions and QA.",
        )
    )
