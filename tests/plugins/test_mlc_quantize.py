"""The MLC quantiser. mlc_llm cannot be installed here, so its command lines run against a
stand-in `mlc_llm` script on PATH that records its arguments and writes what mlc_llm writes;
without it, the exact install command is the error."""

from __future__ import annotations

import json
import os
import struct
import sys
import textwrap
from pathlib import Path

import pytest
from devicelab_mlc.quantize import MLC_INSTALL, MlcQuantizer
from wordsplugin import run_cli

from devicelab import MissingDependencyError, ModelError

FAKE_MLC = textwrap.dedent(
    """\
    #!{python}
    # Stand-in for mlc_llm: record argv, write the files each subcommand writes.
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    with open(os.environ["FAKE_MLC_LOG"], "a") as fh:
        fh.write(json.dumps(args) + "\\n")
    if os.environ.get("FAKE_MLC_FAIL") == args[0]:
        print("fake mlc_llm: out of memory", file=sys.stderr)
        sys.exit(3)
    out = Path(args[args.index("-o") + 1])
    if args[0] == "convert_weight":
        out.mkdir(parents=True, exist_ok=True)
        (out / "params_shard_0.bin").write_bytes(b"w" * 4500)
        records = [{{"nbytes": 4500, "records": []}}]
        (out / "tensor-cache.json").write_text(json.dumps({{"records": records}}))
    elif args[0] == "gen_config":
        (out / "mlc-chat-config.json").write_text(json.dumps({{"conv_template": "x"}}))
    elif args[0] == "compile":
        out.write_bytes(b"lib")
    """
)


def hf_checkpoint(path: Path, weights: int = 8000) -> Path:
    """A Hugging Face directory: config.json and a safetensors header for ``weights`` weights."""
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    header = json.dumps({"w": {"dtype": "F16", "shape": [weights // 8, 8], "data_offsets": [0, 0]}})
    raw = header.encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


@pytest.fixture
def fake_mlc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`mlc_llm` on PATH; returns the file it logs each argv to (one JSON list a line)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "mlc_llm"
    exe.write_text(FAKE_MLC.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MLC_LOG", str(log))
    return log


def test_runs_convert_gen_config_and_compile_for_android(fake_mlc: Path, tmp_path: Path) -> None:
    src = hf_checkpoint(tmp_path / "SmolLM2-135M-Instruct")
    out = tmp_path / "out" / "smol-q4f16_1"
    steps: list[str] = []
    r = MlcQuantizer(context_window=2048).quantize(src, "q4f16_1", out, steps.append)
    argv = [json.loads(line) for line in fake_mlc.read_text().splitlines()]
    lib = str(out / "smol-q4f16_1-q4f16_1-android.tar")
    assert argv == [
        ["convert_weight", str(src), "--quantization", "q4f16_1", "-o", str(out)],
        [
            "gen_config",
            str(src),
            "--quantization",
            "q4f16_1",
            "--conv-template",
            "chatml",
            "--context-window-size",
            "2048",
            "-o",
            str(out),
        ],
        ["compile", str(out / "mlc-chat-config.json"), "--device", "android", "-o", lib],
    ]
    assert steps == [f"mlc_llm {s} (q4f16_1)" for s in ("convert_weight", "gen_config", "compile")]
    # 4500 bytes of weights for 8000 weights: 4.5 bits each, measured from the shard index.
    assert r.bits_per_weight == 4.5 and r.params == 8000 and r.backend == "mlc"
    assert r.size_bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def test_a_failing_step_names_it_with_the_log(
    fake_mlc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MLC_FAIL", "gen_config")
    src = hf_checkpoint(tmp_path / "hf")
    with pytest.raises(ModelError, match=r"`mlc_llm gen_config` failed \(exit code 3\).*memory"):
        MlcQuantizer().quantize(src, "q3f16_1", tmp_path / "o", lambda _: None)


def test_gguf_source_says_mlc_needs_the_hf_checkpoint(
    fake_mlc: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEVICELAB_CACHE", str(tmp_path / "cache"))
    assert run_cli(["quantize", "smollm2-135m-instruct", "--to", "Q4F16_1"]) == 2
    err = capsys.readouterr().err
    assert "is a GGUF file, but MLC-LLM needs the Hugging Face checkpoint" in err
    assert not fake_mlc.exists()  # nothing was run


def test_missing_mlc_llm_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mlc_llm executable
    monkeypatch.setenv("DEVICELAB_CACHE", str(tmp_path / "cache"))
    if "mlc_llm" in sys.modules or __import__("importlib").util.find_spec("mlc_llm"):
        pytest.skip("mlc_llm is installed here")
    with pytest.raises(MissingDependencyError) as info:
        MlcQuantizer().check()
    assert MLC_INSTALL in str(info.value)
    src = hf_checkpoint(tmp_path / "hf")
    assert run_cli(["quantize", str(src), "--to", "q0f16"]) == 2
    err = capsys.readouterr().err
    assert MLC_INSTALL in " ".join(err.split())
