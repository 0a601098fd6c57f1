"""A test double of mlc_llm that behaves like a real MLC-LLM build where devicelab can tell.

It runs no model, but keeps what a real build does with prompts (REFERENCE.md, "MLC-LLM" and
"Caches that fake a fast prefill"), so the old adapter's faults show:

- ``MLCEngine(model, device, *, model_lib, mode, engine_config)``; ``engine_config`` is an
  ``mlc_llm.serve.config.EngineConfig`` whose ``prefix_cache_mode`` is ``"radix"`` by default;
- with the radix cache on, every request's prompt (``max_tokens = 1`` ones included) is
  remembered, and a later request reports ``usage.extra.prefill_tokens`` = only its uncached
  suffix, and 1 when the whole prompt was cached (as measured: 1 of 178); with
  ``prefix_cache_mode = "disable"``, ``prefill_tokens`` equals ``prompt_tokens`` every time;
- prompts are built as MLC builds them: ``engine.conv_template`` (a copy per request) takes
  the system message and turns, ``as_prompt(model_config)`` gives text parts that
  ``engine.tokenizer`` encodes (one token a character here);
- ``usage.extra`` has exactly the keys seen on a real build; streamed chunks carry one token
  each, but the first token ``<`` is held back (it could start ``<|im_end|>``) and streamed
  with the second in one chunk, as a real build does, so ``usage.completion_tokens`` is one
  more than the number of chunks. Tokens are produced ``1 / DECODE_TOKENS_PER_S`` apart.
"""

import time
from types import SimpleNamespace

from .protocol.conversation_protocol import Conversation
from .serve.config import EngineConfig
from .tokenizers import Tokenizer

# A real build's mlc_llm/libinfo.py sets this (a nightly: "0.20.dev0" and so on).
__version__ = "0.20.dev0"

TERMINATED = []
# Every engine made, so a test can look at the config it was given.
ENGINES = []
PREFILL_TOKENS_PER_S = 150.0
DECODE_TOKENS_PER_S = 40.0


def _common_prefix(a, b):
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class MLCEngine:
    def __init__(self, model, device="auto", *, model_lib=None, mode="local", engine_config=None):
        self.model = model
        self.device = device
        config = engine_config if engine_config is not None else EngineConfig()
        self.engine_config = config
        self.tokenizer = Tokenizer(model)
        self.conv_template = Conversation.chatml()
        self.model_config_dicts = [{"conv_template": "chatml", "context_window_size": 2048}]
        self._cached = []  # the radix tree's sequences, as token lists
        self.requests = []  # (prompt_tokens, prefill_tokens) per request
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))
        ENGINES.append(self)

    def _prompt(self, messages):
        conv = self.conv_template.model_copy(deep=True)
        for m in messages:
            if m["role"] == "system":
                conv.system_message = m["content"]
            else:
                conv.messages.append((m["role"], m["content"]))
        conv.messages.append(("assistant", None))
        tokens = list(conv.system_prefix_token_ids or [])
        for part in conv.as_prompt(self.model_config_dicts[0]):
            tokens += self.tokenizer.encode(part)
        return tokens

    def _prefill(self, tokens):
        if self.engine_config.prefix_cache_mode == "disable":
            return len(tokens)
        cached = max((_common_prefix(tokens, seq) for seq in self._cached), default=0)
        self._cached.append(tokens)
        # The last prompt token is always run again: its logits start the decode.
        return max(len(tokens) - cached, 1)

    def _create(
        self,
        *,
        messages,
        model=None,
        stream=False,
        stream_options=None,
        max_tokens=16,
        temperature=None,
        seed=None,
    ):
        tokens = self._prompt(messages)
        prompt_tokens = len(tokens)
        prefill_tokens = self._prefill(tokens)
        self.requests.append((prompt_tokens, prefill_tokens))
        text = ("<one two three four five six seven eight nine ten " * 4)[:max_tokens]
        usage = SimpleNamespace(
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text),
            total_tokens=prompt_tokens + len(text),
        )
        ttft = prefill_tokens / PREFILL_TOKENS_PER_S
        decode = (len(text) - 1) / DECODE_TOKENS_PER_S
        usage.extra = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text),
            "prefill_tokens": prefill_tokens,
            "decode_tokens": len(text) - 1,
            "jump_forward_tokens": 0,
            "prefill_tokens_per_s": PREFILL_TOKENS_PER_S,
            "decode_tokens_per_s": DECODE_TOKENS_PER_S,
            "end_to_end_latency_s": ttft + decode,
            "ttft_s": ttft,
            "inter_token_latency_s": (ttft + decode) / max(len(text), 1),
        }
        if not stream:
            message = SimpleNamespace(role="assistant", content=text)
            return SimpleNamespace(
                choices=[SimpleNamespace(message=message, finish_reason="length")], usage=usage
            )
        include_usage = bool(stream_options and stream_options.get("include_usage"))
        return self._stream(text, usage if include_usage else None)

    def _stream(self, text, usage):
        # One token a character; the held-back "<" goes out with the token after it.
        pieces = [text[:2], *text[2:]] if text.startswith("<") else list(text)
        for i, piece in enumerate(pieces):
            time.sleep(len(piece) / DECODE_TOKENS_PER_S / 10)
            finish = "length" if i == len(pieces) - 1 else None
            delta = SimpleNamespace(role="assistant", content=piece)
            yield SimpleNamespace(
                choices=[SimpleNamespace(index=0, delta=delta, finish_reason=finish)], usage=None
            )
        if usage is not None:
            yield SimpleNamespace(choices=[], usage=usage)

    def terminate(self):
        TERMINATED.append(self.model)
