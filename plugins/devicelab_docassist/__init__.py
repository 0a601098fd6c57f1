"""DocAssist tasks (SUMM, QS, QA) in the reference study's prompt layout, and its corpus.

The system message asks the model to name the intent on its first line and to put its answer
inside ``<response>...</response>``; the user message carries the document and the request
in tagged blocks.

:meth:`DocAssistTask.response` reads a reply in that format, leniently (small models drift
from it): the intent line may differ in case and spacing and lack its angle brackets, the
closing ``</response>`` may be missing (output cut at max_tokens), and without tags the
whole reply after the intent line is the answer, less a leading echo of the prompt (the
document or the request, which small models repeat before answering, if at all). QS's
answer is split into its questions by lines, numbering ("1.", "2)") and bullets. Each
task's own metrics (``Task.score``): ``intent_ok`` (1.0 when the reply names the task's
intent) and ``format_ok`` (1.0 when both the intent line and the ``<response>`` tags were
found). Prompts carry their references (``TaskPrompt.references``) for the quality metrics:
the summary (SUMM), the reference questions (QS), the pair's answer (QA).

A base model (no chat template) gets each prompt's completion form instead: the document, the
request and a cue (``Summary:``, ``Questions:``, ``Answer:``) to continue, with stop sequences
where its answer ends (``TaskPrompt.completion`` and ``stop``). It is never asked for the
intent line or the tags, so its ``intent_ok`` and ``format_ok`` are 0, as they are for a chat
model that leaves them out: the metrics mean the same for both kinds of model, and its answer
is read, echo stripped, as an untagged chat reply is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import devicelab
from devicelab import CorpusSpec, Document, Message, Response, Task, TaskPrompt

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


# The cue a base model continues after the request, and where its answer ends: a blank line
# or the start of another block (base models go on to write the next document or question).
# QA's answers are one line; QS's span a line per question.
CUES = {"SUMM": "Summary:", "QS": "Questions:", "QA": "Answer:"}
STOPS = {
    "SUMM": ("\n\n", "Document:", "Question:"),
    "QS": ("\n\n", "Document:", "Summary:", "Answer:"),
    "QA": ("\n", "Question:", "Document:"),
}


def completion_prompt(kind: str, context: str, request: str) -> str:
    """The completion form of a request: the document, the request and the task's cue. QA's
    request is the question, so it is labelled as one."""
    asked = f"Question: {request}" if kind == "QA" else request
    return f"Document:\n{context}\n\n{asked}\n{CUES[kind]}"


def _prompt(
    kind: str,
    item: str,
    context: str,
    request: str,
    reference: str,
    references: tuple[str, ...],
) -> TaskPrompt:
    return TaskPrompt(
        item,
        (Message("system", SYSTEM_PROMPT), Message("user", user_message(context, request))),
        reference,
        {"system": SYSTEM_PROMPT, "document": context, "request": request},
        tuple(r for r in references if r.strip()),
        completion=completion_prompt(kind, context, request),
        stop=STOPS[kind],
    )


# "<intent>: summarization", "Intent : Question Suggestion", "<INTENT>:question-answering".
_INTENT = re.compile(
    r"^[ \t]*<?[ \t]*intent[ \t]*>?[ \t]*:[ \t]*([A-Za-z][A-Za-z _-]*)", re.I | re.M
)
_OPEN = re.compile(r"<[ \t]*response[ \t]*>", re.I)
_CLOSE = re.compile(r"<[ \t]*/[ \t]*response[ \t]*>", re.I)
# A list marker at the start of a suggested question: "1.", "2)", "-", "*", "•", "Q1:".
_MARKER = re.compile(r"^\s*(?:(?:q(?:uestion)?\s*)?\d+\s*[.):-]|[-*•·])\s*", re.I)


_WORD = re.compile(r"\S+")
# Labels of the prompt's blocks, chat and completion form, that an echo repeats around them.
_LABEL = re.compile(
    r"\A\s*(?:</?[ \t]*(?:document|request)[ \t]*>|(?:document|question|summary|questions|"
    r"answer)[ \t]*:)",
    re.I,
)
# An echo counts from this many words of the document's (or request's) start, or from all of
# the request: fewer words in common are more likely an answer that begins as they do.
ECHO_WORDS = 4


def _plain(word: str) -> str:
    return word.strip(".,;:!?\"'()[]").lower()


def _words_match(text: str, source: str) -> int:
    """Where, in ``text``, its longest leading run of words that is also the start of
    ``source``'s words ends, if the run is an echo (see ECHO_WORDS); else 0."""
    ends, n = 0, 0
    source_words = [_plain(w) for w in _WORD.findall(source)]
    for match in _WORD.finditer(text):
        word = _plain(match.group())
        # The echo's last word may end the model's own sentence ("weeks" -> "weeks.").
        if n >= len(source_words) or not word or word != source_words[n]:
            break
        n, ends = n + 1, match.end()
    return ends if n >= min(ECHO_WORDS, len(source_words)) else 0


def strip_echo(text: str, prompt: TaskPrompt | None) -> str:
    """``text`` without a leading echo of ``prompt``: its block labels and tags, the start of
    its document (at least ECHO_WORDS words of it, in order) and its request, as often as
    they repeat; what follows is the answer the model wrote."""
    if prompt is None:
        return text
    sources = [prompt.fields.get("document", ""), prompt.fields.get("request", "")]
    while True:
        before = text
        text = _LABEL.sub("", text, count=1)
        for source in sources:
            if source.strip():
                text = text[_words_match(text, source) :]
        if text == before:
            return text.strip()


def read_intent(named: str) -> str:
    """The intent a reply's intent line names, normalised ("Question Suggestion" ->
    "question_suggestion"); a known intent followed by more words ("summarization of the
    document") is that intent, since the line is read leniently, as the rest of the format."""
    intent = re.sub(r"[\s-]+", "_", named.strip()).lower()
    for known in INTENTS.values():
        if intent == known or intent.startswith(known + "_"):
            return known
    return intent


def parse_reply(output: str, prompt: TaskPrompt | None = None) -> tuple[str | None, str, bool]:
    """The named intent (normalised, e.g. "question_answering"), the answer text, and whether
    the reply followed the format (intent line and both response tags). An answer without
    response tags loses a leading echo of ``prompt`` (see :func:`strip_echo`)."""
    intent_match = _INTENT.search(output)
    intent = None
    if intent_match:
        intent = read_intent(intent_match.group(1))
    opened = _OPEN.search(output)
    closed = _CLOSE.search(output, opened.end()) if opened else None
    if opened:
        text = output[opened.end() : closed.start() if closed else len(output)]
    else:
        text = output
        if intent_match:
            text = output[: intent_match.start()] + output[intent_match.end() :]
        text = strip_echo(_CLOSE.sub("", text), prompt)
    return intent, text.strip(), bool(intent_match and opened and closed)


def split_questions(text: str) -> tuple[str, ...]:
    """Suggested questions, one per line or list item; several on one line split after "?"."""
    items: list[str] = []
    for line in text.splitlines():
        line = _MARKER.sub("", line).strip()
        if not line:
            continue
        parts = [p.strip() for p in re.split(r"(?<=\?)\s+", line) if p.strip()]
        items.extend(_MARKER.sub("", p).strip() for p in parts)
    return tuple(i for i in items if i)


class DocAssistTask(Task):
    """What the three tasks share: the reply format and the metrics read from it."""

    def response(self, prompt: TaskPrompt, output: str) -> Response:
        intent, text, _ = parse_reply(output, prompt)
        return Response(text, (text,) if text else (), intent)

    def score(self, prompt: TaskPrompt, output: str) -> dict[str, float]:
        intent, _, well_formed = parse_reply(output, prompt)
        return {
            "intent_ok": float(intent == INTENTS[self.kind]),
            "format_ok": float(well_formed),
        }


class Summarize(DocAssistTask):
    kind = "SUMM"
    description = "Summarise the document."
    reference_field = "summary"
    request: ClassVar[str] = "Summarize the given document."

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        summary = document.summary
        return [_prompt(self.kind, "summary", context, self.request, summary, (summary,))]


class SuggestQuestions(DocAssistTask):
    kind = "QS"
    description = "Suggest questions a reader might ask about the document."
    reference_field = "questions"
    request: ClassVar[str] = (
        "Suggest 3 questions about the document that a reader might want answered."
    )

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        reference = "\n".join(document.questions)
        return [
            _prompt(self.kind, "questions", context, self.request, reference, document.questions)
        ]

    def response(self, prompt: TaskPrompt, output: str) -> Response:
        intent, text, _ = parse_reply(output, prompt)
        return Response(text, split_questions(text), intent)


class AnswerQuestion(DocAssistTask):
    kind = "QA"
    description = "Answer a question about the document (one trial per qa pair used)."
    reference_field = "qa (an answer for each question)"

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        return [
            _prompt(self.kind, f"qa{i}", context, pair.question, pair.answer, (pair.answer,))
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
