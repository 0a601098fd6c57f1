"""A model behind an OpenAI-compatible server (llama.cpp's server, llama-cpp-python's server,
``mlc_llm serve``, vLLM, ...), driven over HTTP with the standard library only.

Timing is measured on the host, where the client sits: ``stream.sent()`` right before the
request goes out, ``stream.token()`` as each streamed content chunk arrives (one chunk is one
token on llama.cpp-based servers; text held back at UTF-8 boundaries arrives merged). When the
final ``usage`` counts more tokens than chunks (MLC holds back a first ``<``; some servers
stream several tokens per event), each chunk's tokens are counted after the stream with the
model's tokenizer and timed at its arrival, and the record says ``tokens_batched``. What the
server reports about itself is kept beside it as ``engine_timings``: MLC's ``usage.extra``
(``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``ttft_s``, ...) and llama.cpp's
``timings`` (``prompt_per_second``, ``predicted_per_second``, ...), numbers only, by their own
names. Token counts come from the final chunk's ``usage`` when the server sends one.

Token counting never sends the prompt for generation (a ``max_tokens = 1`` request would
leave it in the server's cache and warm the timed prefill): with a GGUF of the same model
(``tokenizer_gguf``, or the model's ``path``), its own chat template and vocabulary count on
the host, as llama-cpp-python's server tokenises a chat prompt; on llama.cpp's server,
``POST /apply-template`` gives the templated prompt and ``POST /tokenize`` its tokens.

Cold prefill: servers may reuse a cached prompt prefix between requests. Every request asks
llama.cpp's server not to (``"cache_prompt": false``), and the server's own count of the
prompt tokens it evaluated (llama.cpp's ``timings.prompt_n``, MLC's
``usage.extra.prefill_tokens``) is returned as ``prefilled_tokens`` to prove it. Servers that
neither obey nor report (llama-cpp-python's reuses the longest common prefix of the last
prompt) get a cache buster: a short unique marker at the very start of the first message, so
no earlier prompt shares more than the chat template's opening tokens. It is on by default
unless the server is llama.cpp's, and turns on for the rest of the run when a reply reports
no prefill count; its tokens are counted in ``input_tokens`` and in ``cache_buster_tokens``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import string
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import devicelab
from devicelab import (
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    TokenStream,
    is_gguf,
)

OPTIONS = "[models.options]"
_RANDOM = random.SystemRandom()
API_KEY_ENV = "OPENAI_API_KEY"


class ServerError(EngineError):
    """The server could not be reached or answered with an error; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _numbers(obj: Any) -> dict[str, float]:
    """The numeric entries of a JSON object (booleans are not numbers here)."""
    if not isinstance(obj, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in obj.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def _is_gguf(path: Path) -> bool:
    return path.is_file() and is_gguf(path)


def _detail(body: bytes) -> str:
    """The server's own error text from an error response, short."""
    text = body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            err = data.get("error", data.get("detail"))
            if isinstance(err, dict):
                err = err.get("message", err)
            if err is not None:
                text = str(err)
    return text[:300] or "(empty body)"


class OpenAIEngine(Engine):
    name = "openai"
    device_kinds = ("host",)

    @dataclass(frozen=True)
    class Options:
        # The API root, e.g. "http://127.0.0.1:8000/v1"; requests go to {base_url}/chat/completions.
        base_url: str | None = None
        # The server's model id; default: the scenario's model name.
        model: str | None = None
        # Sent as a bearer token; default: the OPENAI_API_KEY environment variable.
        api_key: str | None = None
        # How long one read from the server may take before the trial fails.
        timeout_s: float = 120.0
        # The context window; default: what the server reports (vLLM, llama.cpp's server).
        n_ctx: int | None = None
        # Extra fields merged into every request body (e.g. {cache_prompt = false}).
        extra_body: dict[str, Any] | None = None
        # A GGUF file of the same model whose vocabulary and chat template count tokens on
        # the host; default: the model's path when it is a GGUF. Needed for servers without
        # llama.cpp's /apply-template (llama-cpp-python's).
        tokenizer_gguf: str | None = None
        # A unique marker at the start of every prompt, so the server cannot reuse an earlier
        # prompt's prefix. None: on unless the server reports its own prefill count
        # (llama.cpp's server). false: off, for servers known to prefill every prompt.
        cache_buster: bool | None = None

        def __post_init__(self) -> None:
            where = f"engine 'openai': {OPTIONS}"
            if not self.base_url:
                raise devicelab.ScenarioError(
                    f"{where} base_url is missing: give the server's OpenAI-compatible API root, "
                    'e.g. options = {base_url = "http://127.0.0.1:8000/v1"}.'
                )
            if not self.base_url.startswith(("http://", "https://")):
                raise devicelab.ScenarioError(
                    f"{where} base_url {self.base_url!r} must start with http:// or https://."
                )
            if self.timeout_s <= 0:
                raise devicelab.ScenarioError(f"{where} timeout_s must be positive.")
            if self.n_ctx is not None and self.n_ctx <= 0:
                raise devicelab.ScenarioError(f"{where} n_ctx must be positive.")
            if self.extra_body is not None and not isinstance(self.extra_body, dict):
                raise devicelab.ScenarioError(
                    f"{where} extra_body must be a table, "
                    "e.g. extra_body = {cache_prompt = false}."
                )
            if self.tokenizer_gguf is not None:
                if importlib.util.find_spec("llama_cpp") is None:
                    raise devicelab.MissingDependencyError(
                        f"{where} tokenizer_gguf needs llama-cpp-python to read the GGUF "
                        "vocabulary. Install it: pip install llama-cpp-python"
                    )
                if not Path(self.tokenizer_gguf).is_file():
                    raise devicelab.ScenarioError(
                        f"{where} tokenizer_gguf: {self.tokenizer_gguf} does not exist."
                    )

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self._base = str(options.base_url).rstrip("/")
        # Tokenizer endpoints live at the server root, beside the versioned API.
        self._root = self._base[: -len("/v1")] if self._base.endswith("/v1") else self._base
        self._model_id: str = options.model or model.name
        self._api_key: str | None = options.api_key or os.environ.get(API_KEY_ENV) or None
        self._extra: dict[str, Any] = dict(options.extra_body or {})
        self._server_models: list[str] = []
        self._n_ctx: int | None = None
        self._tokenizer: str | None = None  # "extras" | "llama.cpp" | "gguf"
        self._vocab: Any = None
        self._formatter: Any = None
        self._gguf: str | None = options.tokenizer_gguf
        local = model.path is not None and _is_gguf(model.path)
        if self._gguf is None and local and importlib.util.find_spec("llama_cpp") is not None:
            self._gguf = str(model.path)
        self._llama_cpp_server = False
        self._build: dict[str, str] = {}
        self._buster: bool = bool(options.cache_buster)
        # First tokens of the recent markers: a server's prompt cache holds a few prompts.
        self._buster_firsts: deque[int] = deque(maxlen=64)
        self._bos: list[int] = []
        self._counts: dict[Any, int] = {}

    # -- HTTP -----------------------------------------------------------------------------

    def _open(self, method: str, url: str, body: Any, timeout: float) -> Any:
        headers = {"Accept": "application/json, text/event-stream"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                detail = _detail(exc.read())
            hint = {
                401: f"Check {OPTIONS} api_key or ${API_KEY_ENV}",
                403: f"Check {OPTIONS} api_key or ${API_KEY_ENV}",
                404: f"Check {OPTIONS} base_url (the API root, e.g. .../v1) and model"
                + (
                    f" (the server serves: {', '.join(self._server_models)})"
                    if self._server_models
                    else ""
                ),
            }.get(exc.code, "See the server's log")
            raise ServerError(
                f"{method} {url} returned HTTP {exc.code}: {detail}. {hint}.",
                exc.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise self._timeout(method, url, timeout) from None
            raise ServerError(
                f"cannot reach the server at {url} ({reason}). Check that it is running and "
                f"that {OPTIONS} base_url is right."
            ) from None

    def _timeout(self, method: str, url: str, timeout: float) -> ServerError:
        return ServerError(
            f"{method} {url}: the server did not answer within {timeout:.3g} s. Check that it "
            f"is not stuck or overloaded, or raise {OPTIONS} timeout_s."
        )

    def _json(self, method: str, url: str, body: Any = None) -> Any:
        return self._json_and_headers(method, url, body)[0]

    def _json_and_headers(self, method: str, url: str, body: Any = None) -> tuple[Any, Any]:
        timeout = float(self.options.timeout_s)
        with self._open(method, url, body, timeout) as resp:
            headers = resp.headers
            try:
                raw = resp.read()
            except TimeoutError:
                raise self._timeout(method, url, timeout) from None
        try:
            return json.loads(raw), headers
        except ValueError:
            raise ServerError(
                f"{method} {url} answered with something that is not JSON: "
                f"{raw[:200]!r}. Check that {OPTIONS} base_url points at an OpenAI-compatible "
                "API."
            ) from None

    # -- load -----------------------------------------------------------------------------

    def load(self) -> None:
        # An unreachable server fails this model's trials (EngineError), not the whole run.
        models, headers = self._json_and_headers("GET", f"{self._base}/models")
        data = models.get("data") if isinstance(models, dict) else None
        if not isinstance(data, list):
            raise ServerError(
                f"GET {self._base}/models did not list models (no 'data' array). Check that "
                f"{OPTIONS} base_url points at an OpenAI-compatible API root (e.g. .../v1)."
            )
        entries = [m for m in data if isinstance(m, dict)]
        self._server_models = [str(m.get("id")) for m in entries]
        self._n_ctx = self.options.n_ctx or self._server_context(entries)
        if self._n_ctx is None:
            raise devicelab.ModelError(
                f"the server at {self._base} does not report its context window; set "
                f"{OPTIONS} n_ctx to the context size it was started with."
            )
        props = self._props()
        self._llama_cpp_server = props is not None
        self._build = self._server_build(entries, headers, props)
        if self.options.cache_buster is None:
            # llama.cpp's server obeys cache_prompt and reports timings.prompt_n; others
            # may reuse a prefix and not say so.
            self._buster = not self._llama_cpp_server
        self._setup_tokenizer()

    def _server_build(
        self, entries: list[dict[str, Any]], headers: Any, props: dict[str, Any] | None
    ) -> dict[str, str]:
        """What the server says it is: the model it serves under the requested id (and who
        owns it), its ``Server`` header, llama.cpp's ``/props`` ``build_info`` and model
        file, vLLM's ``/version``. Asked once, at load."""
        out: dict[str, str] = {"base_url": self._base, "model_id": self._model_id}
        mine = [m for m in entries if m.get("id") == self._model_id]
        if mine:
            for key in ("owned_by", "created"):
                if mine[0].get(key) is not None:
                    out[f"model_{key}"] = str(mine[0][key])
        else:
            out["served_models"] = ", ".join(self._server_models)
        server = headers.get("Server") if headers is not None else None
        if server:
            out["server"] = str(server)
        if props is not None:
            for key in ("build_info", "model_path"):
                if isinstance(props.get(key), str):
                    out[key] = props[key]
        with contextlib.suppress(ServerError):
            version = self._json("GET", f"{self._root}/version")
            if isinstance(version, dict) and isinstance(version.get("version"), str):
                out["version"] = version["version"]
        return out

    def build_info(self) -> dict[str, str]:
        return dict(self._build)

    def _props(self) -> dict[str, Any] | None:
        """llama.cpp's server's GET /props, which other servers do not have."""
        with contextlib.suppress(ServerError):
            props = self._json("GET", f"{self._root}/props")
            if isinstance(props, dict) and "default_generation_settings" in props:
                return props
        return None

    def _server_context(self, entries: list[dict[str, Any]]) -> int | None:
        mine = [m for m in entries if m.get("id") == self._model_id] or entries[:1]
        for m in mine:
            if isinstance(m.get("max_model_len"), int):  # vLLM
                return int(m["max_model_len"])
        props = self._props()
        if props is not None:
            settings = props.get("default_generation_settings", {})
            n_ctx = (
                settings.get("n_ctx", props.get("n_ctx")) if isinstance(settings, dict) else None
            )
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
        return None

    def _setup_tokenizer(self) -> None:
        if self._gguf is not None:
            import llama_cpp
            from devicelab_llamacpp import chat_formatter

            self._vocab = llama_cpp.Llama(model_path=self._gguf, vocab_only=True, verbose=False)
            self._formatter = chat_formatter(self._vocab, self._gguf)
            self._tokenizer = "gguf"
            return
        for kind in ("extras", "llama.cpp"):
            try:
                self._tokenizer = kind
                # Some tokenizers add a start token on their own: learn it from "" and drop it.
                self._bos = []
                self._bos = self.tokenize("")
                return
            except ServerError as exc:
                if exc.status not in (404, 405, 501):
                    raise
        self._tokenizer = None
        raise devicelab.ModelError(
            f"the server at {self._root} offers no tokenizer endpoint (neither "
            "llama-cpp-python's /extras/tokenize nor llama.cpp's /tokenize), and devicelab "
            "needs the model's own tokens to cut documents. Set "
            f'{OPTIONS} tokenizer_gguf = "model.gguf" to a GGUF file of the same model.'
        )

    def context_window(self) -> int:
        assert self._n_ctx is not None, "load() first"
        return self._n_ctx

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer == "gguf":
            return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if self._tokenizer == "extras":
            url = f"{self._root}/extras/tokenize"
            reply = self._json("POST", url, {"model": self._model_id, "input": text})
        else:
            url = f"{self._root}/tokenize"
            body = {"content": text, "add_special": False, "parse_special": False}
            reply = self._json("POST", url, body)
        tokens = reply.get("tokens") if isinstance(reply, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ServerError(f"POST {url} did not answer with a list of token ids: {reply!r:.200}")
        n = len(self._bos)
        return tokens[n:] if n and tokens[:n] == self._bos else tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        ids = list(tokens)
        if self._tokenizer == "gguf":
            return bytes(self._vocab.detokenize(ids)).decode("utf-8", errors="replace")
        if self._tokenizer == "llama.cpp":
            reply = self._json("POST", f"{self._root}/detokenize", {"tokens": ids})
            return str(reply.get("content", "")) if isinstance(reply, dict) else ""
        # llama-cpp-python decodes strictly and answers 500 when the ids end inside a UTF-8
        # character (a section cut mid-character): drop the incomplete tail (at most 3 ids).
        for drop in range(4):
            try:
                keep = ids[: len(ids) - drop] if drop else ids
                body = {"model": self._model_id, "tokens": keep}
                reply = self._json("POST", f"{self._root}/extras/detokenize", body)
                return str(reply.get("text", "")) if isinstance(reply, dict) else ""
            except ServerError as exc:
                if exc.status != 500 or drop == 3 or drop >= len(ids):
                    raise
        raise AssertionError("unreachable")

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """The prompt's size after the server's chat template, counted without generating."""
        return self._count({"messages": [{"role": m.role, "content": m.content} for m in messages]})

    def _count(self, payload: dict[str, Any], remember: bool = True) -> int:
        key = json.dumps(payload, sort_keys=True)
        if key in self._counts:
            return self._counts[key]
        if "prompt" in payload:
            count = self._count_raw(str(payload["prompt"]))
        elif self._formatter is not None:
            from devicelab_llamacpp import chat_tokens

            msgs = [Message(m["role"], m["content"]) for m in payload["messages"]]
            count = len(chat_tokens(self._vocab, self._formatter, msgs))
        elif self._llama_cpp_server:
            url = f"{self._root}/apply-template"
            reply = self._json("POST", url, {"messages": payload["messages"]})
            prompt = reply.get("prompt") if isinstance(reply, dict) else None
            if not isinstance(prompt, str):
                raise ServerError(f"POST {url} did not answer with a prompt: {reply!r:.200}")
            count = len(self._server_tokens(prompt))
        else:
            raise devicelab.ModelError(
                f"the server at {self._root} cannot apply its chat template without generating "
                "(it has no /apply-template, as llama-cpp-python's server has not), and a "
                "generation request would leave the prompt in its cache. Set "
                f'{OPTIONS} tokenizer_gguf = "model.gguf" (or the model\'s path) to a GGUF file '
                "of the same model: its chat template and vocabulary count on the host."
            )
        if remember:
            self._counts[key] = count
        return count

    def _server_tokens(self, text: str) -> list[int]:
        """llama.cpp's server's tokens for a whole prompt, special tokens parsed and the start
        token added, as it tokenises a request's prompt."""
        url = f"{self._root}/tokenize"
        reply = self._json(
            "POST", url, {"content": text, "add_special": True, "parse_special": True}
        )
        tokens = reply.get("tokens") if isinstance(reply, dict) else None
        if not isinstance(tokens, list):
            raise ServerError(f"POST {url} did not answer with a list of token ids: {reply!r:.200}")
        return tokens

    def _count_raw(self, prompt: str) -> int:
        """A raw /completions prompt's size, with the start token the server adds."""
        if self._tokenizer == "gguf":
            return len(self._vocab.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        if self._llama_cpp_server:
            return len(self._server_tokens(prompt))
        if self._tokenizer == "extras":
            # llama-cpp-python's /extras/tokenize adds the start token and parses special
            # tokens, as its /completions does.
            url = f"{self._root}/extras/tokenize"
            reply = self._json("POST", url, {"model": self._model_id, "input": prompt})
            tokens = reply.get("tokens") if isinstance(reply, dict) else None
            if isinstance(tokens, list):
                return len(tokens)
        return len(self._bos) + len(self.tokenize(prompt))

    # -- cache buster ---------------------------------------------------------------------

    def _marker(self) -> str:
        """A short marker whose first token no earlier marker of this engine started with,
        so a server's prefix match stops right at it."""
        for _ in range(50):
            # Letters only: digits become one token each in most vocabularies.
            marker = "".join(_RANDOM.choices(string.ascii_lowercase, k=4)) + "\n"
            tokens = self.tokenize(marker)
            if tokens and tokens[0] not in self._buster_firsts:
                self._buster_firsts.append(tokens[0])
                return marker
        raise EngineError(
            "could not make a cache-buster marker with a new first token in 50 tries; set "
            f"{OPTIONS} cache_buster = false if the server prefills every prompt"
        )

    def _busted(self, payload: dict[str, Any]) -> dict[str, Any]:
        marker = self._marker()
        if "prompt" in payload:
            return {"prompt": marker + str(payload["prompt"])}
        msgs = [dict(m) for m in payload["messages"]]
        if msgs:
            msgs[0]["content"] = marker + msgs[0]["content"]
        return {"messages": msgs}

    # -- generate -------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        if request.raw_prompt is not None:
            payload: dict[str, Any] = {"prompt": request.raw_prompt}
            path = "/completions"
        else:
            msgs = [{"role": m.role, "content": m.content} for m in request.messages]
            payload = {"messages": msgs}
            path = "/chat/completions"
        buster_tokens = 0
        if self._buster:
            plain = self._count(payload)
            payload = self._busted(payload)
            buster_tokens = self._count(payload, remember=False) - plain
        body = {
            # llama.cpp's server reuses a slot's cached prompt unless told not to; other
            # servers ignore the field. extra_body may override it.
            "cache_prompt": False,
            **self._extra,
            **payload,
            "model": self._model_id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            # The OpenAI API's own stop sequences: the server ends the answer at them.
            body["stop"] = list(request.stop)
        url = f"{self._base}{path}"
        stream.check_deadline()
        timeout = float(self.options.timeout_s)
        left = stream.seconds_left()
        if left is not None and left < timeout:
            # Every blocking read then ends by the trial's deadline.
            timeout = max(left, 0.01)
        pieces: list[str] = []
        finish = "stop"
        usage: dict[str, Any] = {}
        timings: dict[str, float] = {}
        stream.sent()
        try:
            with self._open("POST", url, body, timeout) as resp:
                for event in _events(resp):
                    if event == "[DONE]":
                        break
                    try:
                        chunk = json.loads(event)
                    except ValueError:
                        raise ServerError(
                            f"POST {url} streamed an event that is not JSON: {event[:200]!r}"
                        ) from None
                    if not isinstance(chunk, dict):
                        continue
                    if "error" in chunk:
                        raise ServerError(
                            f"POST {url} streamed an error: {_detail(json.dumps(chunk).encode())}"
                        )
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if "delta" in choice else choice.get("text")
                        if text:
                            pieces.append(str(text))
                            stream.token(1, text=str(text))
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    timings.update(_numbers(chunk.get("timings")))
        except TimeoutError:
            stream.check_deadline()
            raise self._timeout("POST", url, timeout) from None
        except urllib.error.URLError as exc:
            stream.check_deadline()
            raise ServerError(
                f"POST {url}: the connection failed while streaming ({exc.reason})"
            ) from None
        except OSError as exc:
            stream.check_deadline()
            raise ServerError(
                f"POST {url}: the connection failed while streaming ({exc})"
            ) from None
        server_timings = dict(timings)
        extra = _numbers(usage.get("extra"))
        timings.update(extra)
        output_tokens = usage.get("completion_tokens")
        if isinstance(output_tokens, int) and output_tokens != len(pieces):
            self._recount(stream, pieces)
        input_tokens = usage.get("prompt_tokens")
        if not isinstance(input_tokens, int):
            input_tokens = self._count(payload, remember=not buster_tokens)
        # llama.cpp's timings, else MLC's usage.extra (mlc_llm serve --enable-debug).
        prefilled = server_timings.get("prompt_n", extra.get("prefill_tokens"))
        if prefilled is None and not self._buster and self.options.cache_buster is None:
            # The server did not say what it prefilled: bust its cache from now on.
            self._buster = True
        text = "".join(pieces)
        if request.stop:
            # A server that ignores ``stop`` still has its answer cut where one begins (its
            # token count and times then include what it wrote after it).
            text = devicelab.stop_at(text, request.stop)
        return GenerationResult(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens if isinstance(output_tokens, int) else len(pieces),
            engine_timings=timings,
            finish_reason=finish,
            prefilled_tokens=int(prefilled) if prefilled is not None else None,
            cache_buster_tokens=buster_tokens,
            engine_prefill_tps=_positive(
                server_timings.get("prompt_per_second", extra.get("prefill_tokens_per_s"))
            ),
            engine_decode_tps=_positive(
                server_timings.get("predicted_per_second", extra.get("decode_tokens_per_s"))
            ),
        )

    def _recount(self, stream: TokenStream, pieces: list[str]) -> None:
        """The server streamed several tokens in some events (its usage counts more tokens
        than events): count each event's tokens, off the clock, and time them at its
        arrival. Without a tokenizer the events cannot be counted: the trial says its
        tokens came in batches, and what the events cannot tell is left null."""
        try:
            counts = devicelab.chunk_counts(self.tokenize, pieces)
            stream.token_times = devicelab.recounted(stream.token_times, counts)
        except (devicelab.DevicelabError, ValueError):
            stream.batched = True

    def close(self) -> None:
        if self._vocab is not None:
            with contextlib.suppress(Exception):
                self._vocab.close()
            self._vocab = None


def _events(resp: Any) -> Iterator[str]:
    """The data of each Server-Sent Event, as the lines of one event joined."""
    data: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):  # a comment: keep-alive pings
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
