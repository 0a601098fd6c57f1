"""MLC-LLM quantisation for phones: ``mlc_llm convert_weight``, ``gen_config`` and
``compile --device android``, the study's pipeline (q4f16_1: 4-bit, group size 32, fp16).

mlc_llm is not on PyPI (its ``mlc-*`` 0.1 packages there are empty placeholders), so it is
run as a command: the ``mlc_llm`` executable on PATH, else ``python -m mlc_llm`` where the
module is importable. It cannot be installed on this project's CI machines; the tests run
these command lines against a stand-in ``mlc_llm`` script that records its arguments.

The source must be a Hugging Face model directory (config.json and safetensors): MLC converts
from the original weights, not from a GGUF file.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import devicelab
from devicelab import Quantizer, QuantizeResult, is_gguf

MLC_INSTALL = (
    "python -m pip install --pre -U -f https://mlc.ai/wheels mlc-llm-nightly-cpu mlc-ai-nightly-cpu"
)

# Nominal bits per weight of each code: bits + one fp16 scale per group (q3: group of 40).
NOMINAL_BPW = {
    "q4f16_1": 4 + 16 / 32,
    "q4f16_0": 4 + 16 / 32,
    "q3f16_1": 3 + 16 / 40,
    "q0f16": 16.0,
}
# convert_weight's index of the weight shards (renamed in 2025; either may be written).
_CACHE_INDEX = ("tensor-cache.json", "ndarray-cache.json")
_STEP_TIMEOUT_S = 3600


class MlcQuantizer(Quantizer):
    backend = "mlc"
    types: ClassVar[tuple[str, ...]] = tuple(NOMINAL_BPW)
    engines: ClassVar[tuple[str, ...]] = ("mlc",)
    description = "MLC-LLM convert_weight + gen_config + compile --device android"
    suffix = ""  # a directory: weights, mlc-chat-config.json and the Android model library

    def __init__(
        self,
        conv_template: str = "chatml",
        device: str = "android",
        context_window: int | None = None,
        prefill_chunk: int | None = None,
    ) -> None:
        self.conv_template = conv_template
        self.device = device
        self.context_window = context_window
        self.prefill_chunk = prefill_chunk

    def command(self) -> list[str]:
        """How to run mlc_llm here; raises MissingDependencyError when it cannot be run."""
        exe = shutil.which("mlc_llm")
        if exe is not None:
            return [exe]
        if importlib.util.find_spec("mlc_llm") is not None:
            return [sys.executable, "-m", "mlc_llm"]
        raise devicelab.MissingDependencyError(
            "MLC quantisation needs mlc_llm (the `mlc_llm` command or the mlc_llm Python "
            f"package), which is not on PyPI. Install the nightly build: {MLC_INSTALL}"
        )

    def check(self) -> None:
        self.command()

    def steps(self, source: Path, qtype: str, out: Path) -> list[list[str]]:
        """The three command lines, in order (without the leading mlc_llm command)."""
        gen = [
            "gen_config",
            str(source),
            "--quantization",
            qtype,
            "--conv-template",
            self.conv_template,
        ]
        if self.context_window is not None:
            gen += ["--context-window-size", str(self.context_window)]
        if self.prefill_chunk is not None:
            gen += ["--prefill-chunk-size", str(self.prefill_chunk)]
        return [
            ["convert_weight", str(source), "--quantization", qtype, "-o", str(out)],
            [*gen, "-o", str(out)],
            [
                "compile",
                str(out / "mlc-chat-config.json"),
                "--device",
                self.device,
                "-o",
                str(self.library(out, qtype)),
            ],
        ]

    def library(self, out: Path, qtype: str) -> Path:
        ext = "tar" if self.device in ("android", "iphone") else "so"
        return out / f"{out.name}-{qtype}-{self.device}.{ext}"

    def quantize(
        self, source: Path, qtype: str, out: Path, progress: Callable[[str], None]
    ) -> QuantizeResult:
        check_hf_dir(source)
        cmd = self.command()
        out.mkdir(parents=True, exist_ok=True)
        log = out / "mlc_llm.log"
        t0 = time.perf_counter()
        with log.open("w", encoding="utf-8") as fh:
            for argv in self.steps(source, qtype, out):
                progress(f"mlc_llm {argv[0]} ({qtype})")
                fh.write(f"$ {' '.join([*cmd, *argv])}\n")
                fh.flush()
                rc = subprocess.run(
                    [*cmd, *argv],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=_STEP_TIMEOUT_S,
                    check=False,
                ).returncode
                if rc != 0:
                    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
                    raise devicelab.ModelError(
                        f"`mlc_llm {argv[0]}` failed (exit code {rc}) while quantising {source} "
                        f"to {qtype}. The end of its log ({log}): {' | '.join(tail)}"
                    )
        expected = [out / "mlc-chat-config.json", self.library(out, qtype)]
        index = next((out / n for n in _CACHE_INDEX if (out / n).is_file()), None)
        missing = [str(p) for p in expected if not p.exists()] + (
            [] if index else ["tensor-cache.json"]
        )
        if missing:
            raise devicelab.ModelError(
                f"mlc_llm finished but did not write {', '.join(missing)} in {out}; see {log}."
            )
        params = hf_param_count(source)
        weight_bytes = _index_bytes(index) if index else None
        bpw = (
            round(8 * weight_bytes / params, 3)
            if params and weight_bytes
            else round(NOMINAL_BPW[qtype], 3)
        )
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return QuantizeResult(
            path=out,
            size_bytes=size,
            bits_per_weight=bpw,
            params=params,
            backend=self.backend,
            qtype=qtype,
            seconds=round(time.perf_counter() - t0, 2),
            details={
                "nominal_bits_per_weight": NOMINAL_BPW[qtype],
                "library": str(self.library(out, qtype)),
                "conv_template": self.conv_template,
            },
        )


def check_hf_dir(source: Path) -> None:
    """MLC converts a Hugging Face checkpoint: a directory with config.json and safetensors."""
    if source.is_file() and is_gguf(source):
        raise devicelab.ModelError(
            f"{source} is a GGUF file, but MLC-LLM needs the Hugging Face checkpoint (a directory "
            "with config.json and *.safetensors) to convert from. Download the original model "
            "(e.g. HuggingFaceTB/SmolLM2-135M-Instruct) and give its directory."
        )
    if not source.is_dir():
        raise devicelab.ModelError(
            f"{source} is not a directory. MLC-LLM needs a Hugging Face model directory with "
            "config.json and *.safetensors."
        )
    lacking = [
        what
        for what, ok in (
            ("config.json", (source / "config.json").is_file()),
            ("*.safetensors", any(source.glob("*.safetensors"))),
        )
        if not ok
    ]
    if lacking:
        raise devicelab.ModelError(
            f"{source} has no {' and no '.join(lacking)}: not a Hugging Face checkpoint MLC-LLM "
            "can convert. Give the model's directory as downloaded from the Hub."
        )


def hf_param_count(source: Path) -> int | None:
    """Weights in the checkpoint, from the safetensors headers (no tensor is read)."""
    total = 0
    for path in sorted(source.glob("*.safetensors")):
        try:
            with path.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header: dict[str, Any] = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            return None
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info.get("shape", []):
                count *= int(d)
            total += count
    return total or None


def _index_bytes(index: Path) -> int | None:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        return sum(int(r["nbytes"]) for r in data.get("records", []))
    except (OSError, ValueError, KeyError, TypeError):
        return None
