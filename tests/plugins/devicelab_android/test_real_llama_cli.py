"""The Android llama.cpp engine's reading of llama-cli output, checked against the real thing.

The real llama.cpp completion CLI, built for this host from the llama.cpp that the installed
llama-cpp-python vendors (``python -m devicelab_android.hostcli``), is run with exactly the
argument list the engine builds for a phone, and the engine's reader gets its real stdout and
stderr. Where phones print differently from this host, public real-device output (re-typed as
fixtures under ``data/``, each naming its source) is read by the same parser.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devicelab_android import hostcli
from devicelab_android.llamacli import (
    CliRun,
    HostTokenizer,
    LlamaCliEngine,
    OutputReader,
    host_tokenizer,
    parse_perf,
    parse_version,
)
from devicelab_llamacpp import _cpu_has_amx

from devicelab import (
    GenerationRequest,
    Message,
    MissingDependencyError,
    ModelSpec,
    TokenStream,
)
from devicelab import (
    _plugins as plugin_manager,
)

DATA = Path(__file__).parent / "data"


# -- public real-device output ----------------------------------------------------------------


def fixture_text(name: str) -> str:
    """A fixture's output lines, without its header (the ``#`` lines naming the source)."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def test_fixtures_name_their_public_source() -> None:
    for path in sorted(DATA.glob("*.txt")):
        header = path.read_text(encoding="utf-8").split("\n# Lines from here on")[0]
        assert re.search(r"Source: [\w.-]+/[\w.-]+ (issue|pull request) #\d+", header), path.name


def test_mid_2025_phone_perf_block_with_an_opencl_line_after_it() -> None:
    t = parse_perf(fixture_text("llama_perf_snapdragon8gen3_opencl.txt"))
    assert t["load_ms"] == 8582.29 and t["total_ms"] == 6270.77
    assert (t["prefill_ms"], t["prefill_tokens"]) == (349.84, 12)
    # Text after llama.cpp's own closing parenthesis does not stop the eval line being read.
    assert (t["decode_ms"], t["decode_tokens"]) == (5867.75, 63)
    assert t["decode_tok_s"] == 10.74 and t["prefill_tok_s"] == 34.3


def test_pre_2024_phone_llama_print_timings_block() -> None:
    t = parse_perf(fixture_text("llama_print_timings_snapdragon8gen1_termux.txt"))
    assert t["load_ms"] == 19968.38
    assert (t["prefill_ms"], t["prefill_tokens"]) == (29440.51, 616)
    # The "sample time ... runs" line above it is not the decode line.
    assert (t["decode_ms"], t["decode_tokens"]) == (1051.03, 21)
    assert t["total_ms"] == 49528.13  # a total line with no token count


def test_no_perf_block_gives_no_timings() -> None:
    # A killed run prints no summary: nothing is made up.
    assert parse_perf("main: llama backend init\nggml_opencl: total kernel time: 1.0\n") == {}


# -- the reader on chunks a pipe can deliver -------------------------------------------------


def _words(text: str) -> list[int]:
    return [0] * len(text.split())


def test_reader_joins_a_character_split_across_chunks_and_strips_the_closing_marks() -> None:
    got: list[tuple[int, str]] = []
    reader = OutputReader(_words, lambda n, piece, t: got.append((n, piece)))
    data = " Grüße aus Köln".encode() + b" [end of text]\n" + b"\n\n"
    for i in range(len(data)):
        reader.stdout(data[i : i + 1])  # one byte at a time: splits the two-byte letters
    run = reader.result()
    assert run.text == " Grüße aus Köln" and run.stopped
    assert "".join(piece for _, piece in got) == run.text and "\ufffd" not in run.text
    assert sum(n for n, _ in got) == 3 == run.output_tokens


def test_reader_keeps_a_newline_the_model_wrote_and_times_it_when_it_came() -> None:
    times: list[float] = []
    reader = OutputReader(lambda s: [ord(c) for c in s], lambda n, piece, t: times.extend([t] * n))
    reader.stdout(b"ab\n")  # could be the start of llama.cpp's closing "\n\n": held back
    t_newline = time.perf_counter()
    time.sleep(0.01)
    reader.stdout(b"c")
    run = reader.result()
    assert run.text == "ab\nc" and not run.stopped and run.output_tokens == 4
    assert times[2] <= t_newline < times[3]


# -- the real llama.cpp CLI on this host -----------------------------------------------------


@pytest.fixture(scope="session")
def host_cli() -> Path:
    path = hostcli.find_host_cli()
    if path is None:
        message = (
            "the host llama.cpp CLI is not built for this llama-cpp-python; "
            f"build it once with: {hostcli.BUILD_COMMAND}"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI runs it before pytest: see .ci/run)")
        pytest.skip(message)
    return path


def smollm2() -> ModelSpec:
    return plugin_manager.get_registry().models["smollm2-135m-instruct"][1]


@dataclass
class RealRun:
    argv: list[str]
    stdout: bytes
    stderr: str
    t_cmd: float
    stream: TokenStream
    run: CliRun


class HostRunner:
    """The engine, set up as for a phone whose directory is a host directory."""

    def __init__(self, binary: Path, work: Path) -> None:
        model = smollm2()
        assert model.path is not None
        (work / "llama-cli").symlink_to(binary)
        (work / model.path.name).symlink_to(model.path)
        self.work = work
        registry = plugin_manager.get_registry()
        host = registry.devices["host"][1].open("host", {})
        options = LlamaCliEngine.Options(binary=str(binary), remote_dir=str(work))
        self.engine = LlamaCliEngine(host, model, options)
        self.engine._tok = _host_tokenizer(model)
        self.host = self.engine._tok.engine

    def run(self, request: GenerationRequest) -> RealRun:
        engine = self.engine
        (self.work / "prompt.txt").write_text(engine.prompt_file(request), encoding="utf-8")
        argv = engine.command(request)
        env = dict(os.environ)
        if _cpu_has_amx():
            # This CPU's AMX / weight-repacking path crashes multi-token decoding under some
            # hypervisors (see the host engine); llama.cpp's switch for it, as -nr would be.
            env["LLAMA_ARG_REPACK"] = "0"
        stream = TokenStream()
        reader = OutputReader(engine.tokenize, lambda n, piece, t: stream.token(n, t, text=piece))
        raw: list[bytes] = []
        t_cmd = time.perf_counter()
        stream.sent(t_cmd)
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            err = threading.Thread(target=_pump, args=(proc.stderr.fileno(), reader.stderr))
            err.start()

            def on_stdout(chunk: bytes) -> None:
                raw.append(chunk)
                reader.stdout(chunk)

            # As adb streams it: whatever the pipe holds, as soon as it holds it.
            _pump(proc.stdout.fileno(), on_stdout)
            err.join()
            code = proc.wait(timeout=60)
        assert code == 0, reader.stderr_text[-2000:]
        run = reader.result()
        stream.t_sent = run.prefill_start(t_cmd)
        return RealRun(argv, b"".join(raw), reader.stderr_text, t_cmd, stream, run)


def _pump(fd: int, on_data: Callable[[bytes], object]) -> None:
    while chunk := os.read(fd, 65536):
        on_data(chunk)


_HOST: dict[str, HostTokenizer] = {}


def _host_tokenizer(model: ModelSpec) -> HostTokenizer:
    # One per model for the module: loading the host engine for every test costs seconds.
    if model.name not in _HOST:
        _HOST[model.name] = host_tokenizer(plugin_manager.get_registry(), model)
    return _HOST[model.name]


@pytest.fixture
def runner(host_cli: Path, tmp_path: Path) -> Iterator[HostRunner]:
    yield HostRunner(host_cli, tmp_path)


@pytest.fixture(scope="module", autouse=True)
def _close_host_engines() -> Iterator[None]:
    yield
    for tokenizer in _HOST.values():
        tokenizer.close()
    _HOST.clear()


STORY = [Message("user", "Tell me a story about a lighthouse keeper.")]


def _printed(stderr: str, label: str) -> str:
    """The perf line llama.cpp printed for ``label``, whatever its prefix."""
    [line] = [ln for ln in stderr.splitlines() if re.search(rf":\s+{label} =", ln)]
    return line


def test_real_cli_takes_the_engines_arguments_and_the_reader_gets_it_right(
    runner: HostRunner,
) -> None:
    request = GenerationRequest(STORY, max_tokens=8)
    real = runner.run(request)
    run, timings = real.run, real.run.timings
    assert real.argv[0] == str(runner.work / "llama-cli") and "-no-cnv" in real.argv

    # The numbers are the ones llama.cpp printed, read from its own lines.
    assert f"{timings['load_ms']:.2f} ms" in _printed(real.stderr, "load time")
    prefill = _printed(real.stderr, "prompt eval time")
    assert f"{timings['prefill_ms']:.2f} ms / {int(timings['prefill_tokens']):5d} tokens" in prefill
    decode = _printed(real.stderr, "eval time")
    assert f"{timings['decode_ms']:.2f} ms / {int(timings['decode_tokens']):5d} runs" in decode
    assert f"{timings['total_ms']:.2f} ms" in _printed(real.stderr, "total time")

    # ... and they mean what the engine takes them to mean.
    assert timings["prefill_tokens"] == runner.engine.prompt_tokens(STORY)
    assert not run.stopped and run.output_tokens == 8 == real.stream.count
    assert timings["decode_tokens"] == 7  # the 8th token is sampled, never evaluated
    # Total time is the generation window (since the perf reset after the warm-up run), and
    # load time is not in it.
    assert timings["prefill_ms"] + timings["decode_ms"] <= timings["total_ms"]
    # Prefill began once loading was over, and the first token came after that.
    t_sent = real.stream.t_sent
    assert t_sent is not None and t_sent - real.t_cmd >= timings["load_ms"] / 1000
    assert real.stream.token_times[0] > t_sent

    # The text is the model's greedy answer, as the host engine generates it, and nothing else.
    host = runner.host.generate(request, TokenStream())
    assert run.text == host.text and host.output_tokens == 8
    assert real.stream.text == run.text
    assert real.stdout.decode() == run.text + "\n\n"  # llama.cpp's closing blank line


def test_real_cli_stopping_by_itself(runner: HostRunner) -> None:
    messages = [Message("user", "Reply with one word: is the sky blue?")]
    real = runner.run(GenerationRequest(messages, max_tokens=64))
    run = real.run
    # The answer, then llama.cpp's end mark and closing blank line, which are not text.
    assert real.stdout.decode() == run.text + " [end of text]\n\n\n"
    assert run.stopped and run.text.strip() and real.stream.text == run.text
    # Stopped: every printed token was evaluated; the end-of-text token was not.
    assert run.output_tokens == run.timings["decode_tokens"] == real.stream.count < 64


def test_real_output_fed_a_byte_at_a_time_reads_the_same(runner: HostRunner) -> None:
    messages = [Message("user", "Write the word 'café' in French, German and Japanese.")]
    real = runner.run(GenerationRequest(messages, max_tokens=16))
    reader = OutputReader(runner.engine.tokenize, lambda n, piece, t: None)
    for i in range(len(real.stdout)):
        reader.stdout(real.stdout[i : i + 1])
    reader.stderr(real.stderr.encode())
    again = reader.result()
    assert (again.text, again.output_tokens, again.timings) == (
        real.run.text,
        real.run.output_tokens,
        real.run.timings,
    )


# -- building it --------------------------------------------------------------------------------


def test_real_cli_version_is_read_as_the_engines_build(host_cli: Path) -> None:
    # What LlamaCliEngine.build_info runs on the phone: `llama-cli --version`.
    proc = subprocess.run(
        [str(host_cli), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    build = parse_version(proc.stdout + "\n" + proc.stderr)
    assert build["llama_cpp_build"].isdigit() and build["target"]
    commit = (hostcli.build_info() or {}).get("llama_cpp_commit")
    if commit:  # the vendored tree's commit, which the build stamps into the binary
        assert commit.startswith(build["llama_cpp_commit"])


def test_build_without_cmake_or_a_compiler_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(MissingDependencyError, match=r"needs cmake.*pip install cmake"):
        hostcli.check_tools()
    cmake = tmp_path / "cmake"
    cmake.write_text("#!/bin/sh\n")
    cmake.chmod(0o755)
    with pytest.raises(MissingDependencyError, match=r"C and a C\+\+ compiler.*build-essential"):
        hostcli.check_tools()
    monkeypatch.setenv("CC", "/nope/cc")
    with pytest.raises(MissingDependencyError, match="CC=/nope/cc is not an executable"):
        hostcli.check_tools()


def test_the_build_is_cached_per_llama_cpp_python_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICELAB_CACHE", str(tmp_path))
    assert hostcli.find_host_cli("0.3.36") is None
    assert hostcli.build_dir("0.3.36") != hostcli.build_dir("0.3.35")
    out = hostcli.build_dir("0.3.36")
    out.mkdir(parents=True)
    (out / "llama-completion").write_bytes(b"\x7fELF")
    assert hostcli.find_host_cli("0.3.36") is None  # no build.json: an unfinished build
    (out / "build.json").write_text('{"binary": "llama-completion"}')
    assert hostcli.find_host_cli("0.3.36") == out / "llama-completion"
    assert hostcli.find_host_cli("0.3.35") is None


# -- the real CLI as the virtual S24's llama-cli ------------------------------------------------


def real_cli_scenario(phone_scenario: Callable[..., Path], binary: Path, **keys: Any) -> Path:
    """Two QA trials by ``binary`` as the virtual S24's llama-cli; the phone may run it
    (``host_binaries``). ``keys`` are :func:`devicelab.testing.make_scenario`'s."""
    return phone_scenario(
        binary,
        **{"name": "real-cli-on-the-virtual-s24", "repetitions": 2, **keys},
        tables={"device": {"options": {"host_binaries": [str(binary)]}}},
    )


def test_the_virtual_s24_runs_the_real_cli_the_engine_pushed(
    host_cli: Path,
    tmp_path: Path,
    adb_server: object,
    monkeypatch: pytest.MonkeyPatch,
    phone_scenario: Callable[..., Path],
) -> None:
    from virtual_android.inference import llamacli as phone_cli
    from wordsplugin import run_cli

    from devicelab import load_run
    from devicelab._rundir import TELEMETRY, read_jsonl

    ran: list[Path] = []
    real = phone_cli.run_host_binary

    def seen(ctx: object, binary: Path) -> int:
        ran.append(binary)
        return real(ctx, binary)  # type: ignore[arg-type]

    monkeypatch.setattr(phone_cli, "run_host_binary", seen)
    scenario = real_cli_scenario(phone_scenario, host_cli)
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    run = load_run(out)
    records = run.measured
    assert len(records) == 2 and all(r.ok for r in records)
    # The build the phone reports (--version, answered by the real binary) is llama.cpp's own.
    build = run.provenance_of(records[0])["engine"]["build"]
    assert build["llama_cpp_build"].isdigit() and build["llama_cpp_commit"], build
    assert build["target"] == "Linux x86_64"  # the host build really ran, not the imitation
    # Each trial ran llama.cpp's own binary on the phone (the host build, not the imitation)...
    # (once for --version as the model loads, then once per trial)
    assert ran == [host_cli.resolve()] * 3
    for record in records:
        timings = record.measures.engine_timings or {}
        # ... and the engine read llama.cpp's real perf block: its own count of the prompt.
        assert timings["prefill_tokens"] == record.measures.input_tokens
        assert record.measures.output_tokens == 4 and timings["decode_tokens"] == 3
        # The phone's telemetry saw the real process's memory (the mapped model and more).
        assert record.measures.peak_mem_mb is not None and record.measures.peak_mem_mb > 50
        # ... and its CPU time as the engine's, so the phone's other load is told apart.
        samples = [
            s
            for s in read_jsonl(out / TELEMETRY)
            if s.get("trial_id") == record.trial_id and s.get("engine_cpu_s") is not None
        ]
        # (the first samples may still read the process before this trial's llama-cli)
        engine_cpu = [
            s["engine_cpu_s"] for s in samples if s["engine_id"] == samples[-1]["engine_id"]
        ]
        assert len(engine_cpu) >= 2 and engine_cpu[-1] > engine_cpu[0]
        assert record.measures.other_cpu_pct is not None


def test_a_host_binary_that_is_not_there_is_a_scenario_error(
    tmp_path: Path, phone_scenario: Callable[..., Path]
) -> None:
    from wordsplugin import run_cli

    scenario = real_cli_scenario(phone_scenario, tmp_path / "nope")
    assert run_cli(["run", str(scenario), "--out", str(tmp_path / "run")]) == 2


def test_another_tool_is_cached_beside_the_cli_under_its_own_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICELAB_CACHE", str(tmp_path))
    out = hostcli.build_dir("0.3.36")
    out.mkdir(parents=True)
    (out / "llama-completion").write_bytes(b"\x7fELF")
    (out / "build.json").write_text('{"binary": "llama-completion"}')
    (out / "llama-bench").write_bytes(b"\x7fELF")
    assert hostcli.find_tool("llama-bench", "0.3.36") is None  # the CLI's record is not its
    (out / "build-llama-bench.json").write_text('{"binary": "llama-bench"}')
    assert hostcli.find_tool("llama-bench", "0.3.36") == out / "llama-bench"
    assert hostcli.find_host_cli("0.3.36") == out / "llama-completion"
    # A found build is returned without building (no cmake, no download).
    assert hostcli.host_tool("llama-bench", version="0.3.36") == out / "llama-bench"
    with pytest.raises(hostcli.HostCliError, match="not a cmake target"):
        hostcli.host_tool("../llama-bench", version="0.3.36")


def test_a_base_model_on_the_virtual_s24_gets_the_completion_prompt(
    host_cli: Path,
    gemma_path: Path,
    tmp_path: Path,
    adb_server: object,
    phone_scenario: Callable[..., Path],
) -> None:
    from wordsplugin import run_cli

    from devicelab import load_run

    scenario = real_cli_scenario(
        phone_scenario, host_cli, model="gemma-3-270m", repetitions=1, max_output_tokens=16,
        model_keys={"engine": "llama.cpp", "quant": "q4_k_m", "path": str(gemma_path)},
    )  # fmt: skip
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    [record] = load_run(out).measured
    assert record.ok and record.identity.prompt_format == "completion"
    # llama-cli got the completion prompt as it is: its own count of the prompt is ours.
    timings = record.measures.engine_timings or {}
    assert timings["prefill_tokens"] == record.measures.input_tokens
    # It cannot stop at a text, so it decoded on; the answer is cut at QA's stop all the same.
    assert record.measures.output_tokens == 16
    assert record.output_text and record.output_text.strip() and "\n" not in record.output_text
