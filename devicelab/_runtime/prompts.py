"""Each trial's prompt, cut from the document in the loaded model's own tokens."""

from __future__ import annotations

from .._api import Engine, TaskPrompt
from .._corpus import Sections, cut_sections
from .._errors import ModelError
from .plan import Plan

PromptKey = tuple[str, str, str, int]  # task, document, item, context length


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
    worst = max(prompts.values(), key=lambda p: sum(len(m.content) for m in p.messages))
    need = engine.prompt_tokens(worst.messages) + sc.max_output_tokens
    if need > window:
        raise ModelError(
            f"{sc.source}: the longest prompt needs {need} tokens ({need - sc.max_output_tokens} "
            f"prompt + {sc.max_output_tokens} output) but {engine.model.name} has a context of "
            f"{window}. Lower [context] lengths or [tasks] max_output_tokens, or raise the "
            "engine's context size in [models.options] (for llama.cpp: n_ctx)."
        )
    return prompts
