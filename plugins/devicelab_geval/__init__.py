"""devicelab_geval: a G-Eval-style LLM judge (metric ``geval``), off unless a scenario lists it.

After Liu et al. 2023, "G-Eval: NLG Evaluation using GPT-4 with Better Human Alignment": for
each criterion the judge gets the criterion's definition and its evaluation steps, the
document the model saw, the request and the answer, and fills in a one-line form with a score
from 1 to 5. Where the judge engine gives token probabilities, the score is the
probability-weighted mean of the digits 1..5 at the score token (this breaks the ties and the
pull towards one digit that integer scores have); otherwise it is the integer the judge wrote.

Record keys: ``geval_<criterion>`` per criterion, ``geval`` (their mean) and
``geval_weighted`` (1.0 when every score came from token probabilities, else 0.0).

The evaluation steps below are written by hand for devicelab's tasks (the paper has the judge
write them once per criterion; fixed steps keep runs comparable across judges).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import devicelab
from devicelab import (
    Engine,
    GenerationRequest,
    Message,
    Metric,
    MetricContext,
    Scored,
    TokenStream,
)

SCORES = ("1", "2", "3", "4", "5")


@dataclass(frozen=True)
class Criterion:
    name: str
    definition: str
    steps: tuple[str, ...]


# Criteria for any task; TASK_CRITERIA refines some of them for one task kind.
CRITERIA: dict[str, Criterion] = {
    "coherence": Criterion(
        "coherence",
        "how well the answer is organised: its sentences follow from one another and build "
        "a clear whole, rather than a loose list of facts.",
        (
            "Read the document and note its main topic and key points.",
            "Read the answer and check that it presents its points in a sensible order, with "
            "clear links between sentences.",
        ),
    ),
    "consistency": Criterion(
        "consistency",
        "whether everything the answer states is supported by the document. An answer that "
        "adds facts the document does not contain, or contradicts it, scores low.",
        (
            "Read the document and note the facts it states.",
            "Check each statement in the answer against the document, looking for facts that "
            "are invented, changed or contradicted.",
        ),
    ),
    "fluency": Criterion(
        "fluency",
        "the quality of the language: grammar, spelling, word choice and sentence structure.",
        (
            "Read the answer on its own.",
            "Look for grammatical errors, broken or repeated sentences and wrong words that "
            "make it hard to read.",
        ),
    ),
    "relevance": Criterion(
        "relevance",
        "how well the answer does what the request asks, using the document, without "
        "unrelated or padding content.",
        (
            "Read the request and the document.",
            "Check that the answer addresses the request and stays on the document's subject.",
        ),
    ),
    "correctness": Criterion(
        "correctness",
        "whether the answer is right according to the document.",
        (
            "Read the question and find the part of the document that answers it.",
            "Compare the answer with what the document says and judge whether it is right and "
            "complete.",
        ),
    ),
    "answerability": Criterion(
        "answerability",
        "whether each suggested question can be answered from the document.",
        (
            "Read the document.",
            "For each suggested question, check that the document contains its answer.",
        ),
    ),
}

TASK_CRITERIA: dict[tuple[str, str], Criterion] = {
    ("SUMM", "relevance"): Criterion(
        "relevance",
        "how well the summary selects the document's important content: it includes the "
        "key points and leaves out minor details and repetition.",
        (
            "Read the document and note its key points.",
            "Check which key points the summary covers and whether it spends words on "
            "unimportant or repeated content.",
        ),
    ),
    ("QA", "correctness"): Criterion(
        "correctness",
        "whether the answer to the question is right according to the document (and the "
        "reference answer, where one is given).",
        (
            "Read the question and find the part of the document that answers it.",
            "Compare the answer with the reference answer, where one is given, and with the "
            "document; judge whether it is right and complete.",
        ),
    ),
    ("QA", "relevance"): Criterion(
        "relevance",
        "whether the answer addresses the question that was asked, directly and without "
        "unrelated content.",
        (
            "Read the question.",
            "Check that the answer responds to that question rather than to another one, and "
            "that it does not wander off.",
        ),
    ),
    ("QS", "relevance"): Criterion(
        "relevance",
        "whether the suggested questions, taken as a set, are about the document's important "
        "content, the questions a reader of this document would want to ask.",
        (
            "Read the document and note its key points.",
            "Read the suggested questions as a set and check that they ask about those key "
            "points rather than trivia or other subjects.",
        ),
    ),
    ("QS", "answerability"): Criterion(
        "answerability",
        "whether the suggested questions, taken as a set, can be answered from the document.",
        (
            "Read the document.",
            "For each suggested question, check that the document contains its answer; score "
            "the set by how many can be answered.",
        ),
    ),
}

DEFAULT_CRITERIA: dict[str, tuple[str, ...]] = {
    "SUMM": ("coherence", "consistency", "fluency", "relevance"),
    "QA": ("correctness", "relevance"),
    "QS": ("relevance", "answerability"),
}
FALLBACK_CRITERIA = ("relevance",)

# What the answer is called in the prompt, per task kind.
ANSWER_NAMES: dict[str, tuple[str, str]] = {
    "SUMM": ("a summary", "Summary"),
    "QA": ("an answer to a question", "Answer"),
    "QS": ("a set of questions suggested", "Suggested questions"),
}


def criteria_for(task: str, names: Sequence[str] | None = None) -> list[Criterion]:
    """The criteria a ``task`` is judged on: ``names`` if given, else the task's defaults."""
    chosen = names or DEFAULT_CRITERIA.get(task, FALLBACK_CRITERIA)
    return [TASK_CRITERIA.get((task, n), CRITERIA[n]) for n in chosen]


def answer_text(item: Scored) -> str:
    """The candidates as the judge reads them: several (suggested questions) as a list."""
    answers = [c.strip() for c in item.candidates if c.strip()]
    if len(answers) > 1:
        return "\n".join(f"- {a}" for a in answers)
    return answers[0] if answers else ""


def build_messages(item: Scored, criterion: Criterion, document: str) -> list[Message]:
    """The judge's prompt for one criterion: definition, steps, document, request, answer."""
    what, label = ANSWER_NAMES.get(item.task, ("an answer", "Answer"))
    title = criterion.name.capitalize()
    steps = [*criterion.steps]
    steps.append(
        f"Give a {criterion.name} score from 1 to 5, where 1 is the lowest and 5 the highest."
    )
    parts = [
        f"You will be given {what} written for a document, in reply to a request. Rate it "
        "on one criterion only. Read these instructions carefully and keep them in mind.",
        f"Evaluation criterion:\n{title} (1-5): {criterion.definition}",
        "Evaluation steps:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)),
        f"Document:\n{document}",
    ]
    if item.request:
        parts.append(f"Request:\n{item.request}")
    if item.task == "QA" and item.references and criterion.name == "correctness":
        parts.append("Reference answer:\n" + "\n".join(item.references))
    parts.append(f"{label}:\n{answer_text(item)}")
    parts.append(f"Evaluation form (the score only):\n- {title}:")
    return [Message("user", "\n\n".join(parts))]


def answer_prefix(criterion: Criterion) -> str:
    """The start of the judge's reply, written for it where the engine allows: the next token
    is then the score itself, whose probabilities the weighting reads."""
    return f"{criterion.name.capitalize()} (1-5): "


def weighted_score(logprobs: Mapping[str, float]) -> float | None:
    """The probability-weighted mean of the digits 1..5 among one token's top alternatives.

    Digits missing from the alternatives count as probability 0 and the rest is renormalised
    over the digits present; ``None`` when none of 1..5 is there. Token texts are stripped, so
    "4" and " 4" pool their probability.
    """
    mass = dict.fromkeys(SCORES, 0.0)
    for text, logprob in logprobs.items():
        key = text.strip()
        if key in mass:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(int(d) * p for d, p in mass.items()) / total


# A score: 1..5, maybe with decimals ("4", "2.5"), not part of a bigger number.
_NUMBER = r"(?<![\d.])([1-5](?:\.\d+)?)(?!\d|\.\d)"
# Most specific first: "4/5", "4 out of 5"; "Score: 4", "score of 4"; then the first number
# standing alone ("I'd give it a 4").
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out of)\s*5(?!\d)", re.IGNORECASE)
_LABELLED = re.compile(r"\b(?:score|rating)\b[^\d\n]{0,30}?" + _NUMBER, re.IGNORECASE)
_ALONE = re.compile(_NUMBER)
_AFTER_LIST_MARKER = re.compile(r"[.)]\s")
# The scale itself ("(1-5)", "from 1 to 5"), which a judge may echo before its score.
_SCALE = re.compile(r"(?<![\d.])1\s*(?:-|\u2013|to)\s*5(?![\d.]\d)", re.IGNORECASE)


def parse_score(reply: str, continues_line: bool = False) -> tuple[float, int] | None:
    """The score a reply states and where it starts in ``reply``; ``None`` if none.

    ``continues_line``: the reply goes on from a line the judge was given (the form's
    "Coherence (1-5): "), so a number at its very start is not a list marker.
    """
    # Blanked out, not removed: offsets stay those of ``reply``.
    reply = _SCALE.sub(lambda m: " " * len(m.group()), reply)
    for pattern in (_FRACTION, _LABELLED):
        for match in pattern.finditer(reply):
            if float(match.group(1)) <= 5:
                return float(match.group(1)), match.start(1)
    for match in _ALONE.finditer(reply):
        # A list marker ("1. Read the document") echoes the steps; it is not a score.
        newline = reply.rfind("\n", 0, match.start())
        line = reply[newline + 1 : match.start()]
        at_line_start = not line.strip() and (newline >= 0 or not continues_line)
        if at_line_start and _AFTER_LIST_MARKER.match(reply, match.end()):
            continue
        if float(match.group(1)) <= 5:
            return float(match.group(1)), match.start(1)
    return None


def score_reply(
    reply: str, top: Sequence[Mapping[str, float]], continues_line: bool = False
) -> tuple[float, bool] | None:
    """A reply's score and whether it is probability-weighted; ``None`` when it has none.

    ``top`` holds the engine's top alternatives per output token (may be empty). The score
    token is the output token that carries the parsed digit: with greedy decoding the chosen
    token is the likeliest one, so the tokens' texts are rebuilt from the alternatives and
    the digit's position in the reply picks the token.
    """
    parsed = parse_score(reply, continues_line)
    if parsed is None:
        return None
    value, offset = parsed
    # The weights are read where the (leading) digit was written.
    index = _token_at(reply, offset, top, reply[offset])
    if index is not None:
        weighted = weighted_score(top[index])
        if weighted is not None:
            return weighted, True
    return value, False


def _token_at(
    reply: str, offset: int, top: Sequence[Mapping[str, float]], digit: str
) -> int | None:
    chosen = [max(alts, key=lambda t: alts[t]) if alts else "" for alts in top]
    if "".join(chosen) == reply:
        end = 0
        for i, text in enumerate(chosen):
            end += len(text)
            if offset < end:
                return i if text.strip() == digit else None
        return None
    # The texts do not add up (the engine samples, or merged byte fragments): take the first
    # token that is the digit alone.
    return next((i for i, text in enumerate(chosen) if text.strip() == digit), None)


class GEval(Metric):
    """An LLM judge: scores 1-5 per criterion, weighted by token probabilities."""

    name = "geval"
    description = (
        "G-Eval-style LLM judge: 1-5 per criterion (SUMM coherence, consistency, fluency, "
        "relevance; QA correctness, relevance; QS relevance, answerability), weighted by the "
        "judge's token probabilities where it gives them. Off unless a scenario lists it."
    )
    needs_references = False

    @dataclass(frozen=True)
    class Options:
        # The judge: any registered model name (`devicelab plugins` lists them).
        model: str | None = None
        device: str = "host"
        # Criteria names for every task, instead of each task's defaults.
        criteria: list[str] | None = None
        max_tokens: int = 8
        # Alternatives asked for per output token; 20 is as many as OpenAI's API gives.
        top_logprobs: int = 20

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._engine: Engine | None = None
        self._prefill = False

    @classmethod
    def check(cls, options: Any) -> None:
        where = "[quality.options.geval]"
        if not options.model:
            raise devicelab.ScenarioError(
                f"the geval metric needs a judge model: add {where} with "
                'model = "<a registered model name>" (e.g. "smollm2-135m-instruct"; '
                "`devicelab plugins` lists the registered models). A judge of a few billion "
                "parameters or more gives judgements worth reading."
            )
        criteria = options.criteria
        if criteria is not None:
            if not isinstance(criteria, list) or not criteria:
                raise devicelab.ScenarioError(
                    f"{where} criteria must be a non-empty list of criterion names, "
                    f"not {criteria!r}. Known criteria: {', '.join(sorted(CRITERIA))}."
                )
            unknown = [c for c in criteria if c not in CRITERIA]
            if unknown:
                raise devicelab.ScenarioError(
                    f"{where} criteria: unknown {', '.join(map(repr, unknown))}. "
                    f"Known criteria: {', '.join(sorted(CRITERIA))}."
                )
        if options.max_tokens < 1:
            raise devicelab.ScenarioError(f"{where} max_tokens must be at least 1.")
        if options.top_logprobs < 0:
            raise devicelab.ScenarioError(f"{where} top_logprobs must be 0 or more.")

    @classmethod
    def models(cls, options: Any) -> tuple[str, ...]:
        # The core checks the judge is registered before the run directory exists.
        return (options.model,) if options.model else ()

    def load(self, context: MetricContext) -> None:
        self._engine = context.open_engine(self.options.model, self.options.device)
        try:
            self._engine.chat_prompt([Message("user", "")])
            self._prefill = True
        except NotImplementedError:
            self._prefill = False

    def score(self, item: Scored) -> dict[str, float]:
        if self._engine is None:
            raise RuntimeError("the geval metric was not loaded")
        if not answer_text(item):
            return {}
        values: dict[str, float] = {}
        weighted: list[bool] = []
        failed: list[str] = []
        for criterion in criteria_for(item.task, self.options.criteria):
            reply, top = self._ask(item, criterion)
            result = score_reply(reply, top, continues_line=self._prefill)
            if result is None:
                failed.append(f"{criterion.name}: {reply!r}")
                continue
            values[f"geval_{criterion.name}"] = round(result[0], 4)
            weighted.append(result[1])
        if failed:
            got = ", ".join(f"{k}={v}" for k, v in values.items()) or "none"
            raise ValueError(
                f"no score from 1 to 5 in the reply of the judge ({self.options.model}) for "
                f"{'; '.join(failed)}; scores it gave: {got}. A larger judge model follows "
                "the form better: set [quality.options.geval] model."
            )
        values["geval"] = round(sum(values.values()) / len(values), 4)
        values["geval_weighted"] = 1.0 if all(weighted) else 0.0
        return values

    def _ask(self, item: Scored, criterion: Criterion) -> tuple[str, list[dict[str, float]]]:
        engine = self._engine
        assert engine is not None
        messages = self._fit(engine, item, criterion)
        prefix = answer_prefix(criterion) if self._prefill else ""
        request = GenerationRequest(
            messages,
            max_tokens=self.options.max_tokens,
            temperature=0.0,
            raw_prompt=engine.chat_prompt(messages) + prefix if self._prefill else None,
            top_logprobs=self.options.top_logprobs,
        )
        result = engine.generate(request, TokenStream())
        return result.text, result.top_logprobs

    def _fit(self, engine: Engine, item: Scored, criterion: Criterion) -> list[Message]:
        """The prompt, with the document cut short where it would overflow the judge's
        context window (the judge then sees the start of what the model saw)."""
        messages = build_messages(item, criterion, item.source)
        room = engine.context_window() - self.options.max_tokens - 16
        over = engine.prompt_tokens(messages) - room
        if over <= 0:
            return messages
        tokens = engine.tokenize(item.source)
        keep = len(tokens) - over
        if keep < 64:
            raise devicelab.ModelError(
                f"the geval judge {self.options.model!r} has a context window of "
                f"{engine.context_window()} tokens, too small for its prompt. Use a judge "
                "model with a larger context (or a larger n_ctx)."
            )
        cut = engine.detokenize(tokens[:keep]) + " [...]"
        return build_messages(item, criterion, cut)

    def close(self) -> None:
        # The engine belongs to the context, which closes it.
        self._engine = None


@devicelab.hookimpl
def devicelab_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(GEval)
