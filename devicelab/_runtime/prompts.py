"""Each trial's prompt, cut from the document in the loaded model's own tokens."""

from __future__ import annotations

from .._api import Engine, TaskPrompt
from .._corpus import Sections, cut_sections
from .._errors import ModelError
from .plan import Plan

PromptKey = tuple[str, str, str, int]  # task, document, item, context length


def completion_text(prompt: TaskPrompt) -> str:
    """What a base model is given: the task's completion form, or, from a task that has
    none, its messages' contents one after the other."""
    return prompt.completion or "\n\n".join(m.content for m in prompt.messages)


def prompt_length(engine: Engine, prompt: TaskPrompt) -> int:
    """The tokens ``prompt`` takes in the form the loaded model gets (Engine.prompt_format)."""
    if engine.prompt_format() == "completion":
        return len(engine.tokenize(completion_text(prompt))) + 1  # + the beginning-of-text token
    return engine.prompt_tokens(prompt.messages)


def build_prompts(plan: Plan, engine: Engine) -> dict[PromptKey, TaskPrompt]:
    """Each (task, document, item, length) prompt; a :class:`ModelError` when the longest does
    not fit the model's context window with the scenario's output tokens."""
    sc = plan.scenario
    window = engine.context_window()
    prompts: dict[PromptKey, TaskPrompt] = {}
    for doc in plan.documents:
        sections: Sections = cut_sections(
            doc.id, engine.tokenize(doc.text), sc.sections, sc.section_size
        )
        for length in sc.lengths:
            context = engine.detokenize(sections.context_tokens(length))
            for kind in sc.task_kinds:
                for prompt in plan.tasks[kind].prompts(doc, context)[: sc.qa_questions]:
                    prompts[(kind, doc.id, prompt.item, length)] = prompt
    # The longest prompt decides whether the scenario fits the model's context window.
    completion = engine.prompt_format() == "completion"
    worst = max(
        prompts.values(),
        key=lambda p: (
            len(completion_text(p)) if completion else sum(len(m.content) for m in p.messages)
        ),
    )
    need = prompt_length(engine, worst) + sc.max_output_tokens
    if need > window:
        raise ModelError(
            f"{sc.source}: the longest prompt needs {need} tokens ({need - sc.max_output_tokens} "
            f"prompt + {sc.max_output_tokens} output) but {engine.model.name} has a context of "
            f"{window}. Lower [context] lengths or [tasks] max_output_tokens, or raise the "
            "engine's context size in [models.options] (for llama.cpp: n_ctx)."
        )
    return prompts
