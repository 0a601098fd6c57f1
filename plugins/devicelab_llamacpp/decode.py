"""The per-token loop of the llama.cpp engine, on llama.cpp's own API.

llama-cpp-python's ``Llama.generate`` costs Python work between two decodes (a generator
step, a batch filled field by field, a KV-cache trim, the token history copied), and its
``eval`` fills a prompt batch one ctypes field at a time. This loop does what llama-bench
does instead: ``llama_batch_get_one`` over the token array (llama.cpp numbers the positions
itself and computes logits for the last token only), one ``llama_decode`` per output token,
and, at a temperature, a native sampler chain, so the time between two decodes is the
sampler's and the stream's. Greedy decoding takes the argmax of the logits instead of
llama.cpp's greedy sampler: the same token (the first of the largest logits), but the sampler
copies all 49,152 logits of SmolLM2 into a candidate array first, ~130 us per token here
against ~8 us, and 2 % of a 2-thread decode step is the gap being closed (llama-bench does not
sample at all).
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable, Sequence
from typing import Any

import devicelab
from devicelab import GenerationRequest, TokenStream


class DecodeError(devicelab.EngineError):
    """llama_decode refused a batch (the context is full, or llama.cpp failed)."""


def sampler_chain(request: GenerationRequest) -> Any:
    """llama.cpp's sampler chain for a ``request`` with a temperature: top-k 40, top-p 0.95,
    min-p 0.05, the temperature and a seeded draw. These are the settings the engine used
    through ``Llama.generate`` (whose repeat penalty of 1 and typical-p of 1 are no-ops), so
    the same seed draws the same tokens. The caller frees it."""
    import llama_cpp as lc

    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    for sampler in (
        lc.llama_sampler_init_top_k(40),
        lc.llama_sampler_init_top_p(0.95, 1),
        lc.llama_sampler_init_min_p(0.05, 1),
        lc.llama_sampler_init_temp(request.temperature),
        lc.llama_sampler_init_dist(request.seed & 0xFFFFFFFF),
    ):
        lc.llama_sampler_chain_add(chain, sampler)
    return chain


def _decode(ctx: Any, batch: Any, what: str) -> None:
    import llama_cpp as lc

    status = lc.llama_decode(ctx, batch)
    if status != 0:
        # 1: no room in the KV cache for the batch; negative: llama.cpp failed.
        reason = "the context is full (raise n_ctx)" if status == 1 else "llama.cpp failed"
        raise DecodeError(f"llama_decode of the {what} returned {status}: {reason}.")


def generate(
    ctx: Any,
    vocab: Any,
    n_batch: int,
    prompt: Sequence[int],
    request: GenerationRequest,
    stream: TokenStream,
    after_token: Callable[[], None] | None = None,
) -> tuple[list[int], str, str | None]:
    """Prefill ``prompt`` from an empty cache and decode up to ``request.max_tokens`` tokens,
    calling ``stream.sent()`` before the prefill and ``stream.token()`` as each token is
    sampled; ``after_token`` runs next, while the context still holds that token's logits.
    Returns the tokens (end of generation excluded), the finish reason and, with
    ``request.stop``, the text cut at the stop (else ``None``). The sampled token that reaches
    ``max_tokens`` is not decoded, so llama.cpp counts one decode fewer than tokens, as
    ``Llama.generate`` did.

    With stop sequences, a token whose text may begin a stop reaches the stream only once the
    next tokens show it does not (with the time it was sampled at); decoding ends when a stop
    is complete, and the tokens inside it are neither streamed nor counted."""
    import llama_cpp as lc
    import numpy as np

    lc.llama_memory_clear(lc.llama_get_memory(ctx), True)  # a cold prefill: no prefix reuse
    lc.llama_perf_context_reset(ctx)
    chain = sampler_chain(request) if request.temperature != 0 else None
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    one = (lc.llama_token * 1)()
    piece = ctypes.create_string_buffer(64)
    # Token bytes can end inside a UTF-8 character: decode incrementally.
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[int] = []
    finish = "length"
    # A sampled token and the time it was sampled at, held while it may begin a stop.
    cutter = devicelab.StopCutter[tuple[int, float]](request.stop) if request.stop else None

    def emit(released: list[tuple[str, tuple[int, float]]]) -> None:
        for piece_text, (tok, t) in released:
            out.append(tok)
            stream.token(t=t, text=piece_text)

    sampled = 0
    try:
        stream.sent()
        for start in range(0, len(prompt), n_batch):
            chunk = prompt[start : start + n_batch]
            tokens = (lc.llama_token * len(chunk))(*chunk)
            _decode(ctx, lc.llama_batch_get_one(tokens, len(chunk)), "prompt")
        while True:
            if chain is None:
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), (n_vocab,))
                token = int(logits.argmax())
            else:
                token = lc.llama_sampler_sample(chain, ctx, -1)
            if lc.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            n = lc.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
            if n < 0:  # the piece needs -n bytes
                piece = ctypes.create_string_buffer(-n)
                n = lc.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
            sampled += 1
            if cutter is None:
                out.append(token)
                stream.token(text=text.decode(piece.raw[:n]))
            else:
                emit(cutter.add(text.decode(piece.raw[:n]), (token, time.perf_counter())))
            if after_token is not None:
                after_token()
            if cutter is not None and cutter.stopped:
                finish = "stop"
                break
            if sampled >= request.max_tokens:
                break
            one[0] = token
            _decode(ctx, lc.llama_batch_get_one(one, 1), "output token")
        # Bytes of a character the last token left unfinished: the stream's text ends as
        # the detokenised answer does (with a replacement character), not short of it.
        tail = text.decode(b"", final=True)
        if cutter is not None:
            emit(cutter.flush())
        elif tail:
            stream.text += tail
    finally:
        if chain is not None:
            lc.llama_sampler_free(chain)
    return out, finish, None if cutter is None else cutter.text
