"""The phone's own bytes: llama.cpp cross-built for arm64 (devicelab android build-llama), pushed
by the Android engine to the virtual S24, which runs it under qemu in its sandbox.

Needs Debian's g++-aarch64-linux-gnu, qemu-user-static and bubblewrap (.ci/run installs them);
without them the tests skip with the install command. The build takes minutes once and is
cached (.ci/run makes it before the tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from devicelab_android import crossbuild
from virtual_android.system.elfexec import sandbox_problem

from devicelab import load_run
from devicelab.testing import make_scenario

ROOT = Path(__file__).resolve().parents[3]
INSTALL = "apt-get install g++-aarch64-linux-gnu qemu-user-static bubblewrap"


@pytest.fixture(scope="session")
def arm64_cli() -> Path:
    if shutil.which(crossbuild.CROSS_CXX) is None:
        pytest.skip(f"no arm64 cross compiler: {INSTALL}")
    problem = sandbox_problem()
    if problem is not None:
        pytest.skip(f"the virtual S24 cannot run pushed programs here: {problem}")
    profile = crossbuild.read_profile(str(ROOT / "devices" / "virtual-s24.toml"))
    return crossbuild.build_arm64(crossbuild.profile_arch(profile), lambda line: None)


def _run(tmp_path: Path, device: str) -> tuple[Path, list[dict[str, object]]]:
    """The scenario on ``device`` (its file in a directory of its own) and its records."""
    from wordsplugin import run_cli

    (tmp_path / device).mkdir()
    scenario = make_scenario(
        tmp_path / device, name="arm64-on-the-virtual-s24", kinds=["QA"], device=device,
        model_keys={"engine": "llama.cpp"}, model_options={"threads": 2}, max_output_tokens=4,
        scenario_keys={"timeout_s": 600}, tables={"tasks": {"qa_questions": 1}},
    )  # fmt: skip
    out = tmp_path / device / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    return scenario, [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_the_engine_pushes_the_arm64_build_and_reads_its_real_output(
    arm64_cli: Path, tmp_path: Path, adb_server: object
) -> None:
    _, (record,) = _run(tmp_path, "virtual-s24")
    assert record["status"] == "ok", record["error"]
    timings = record["engine_timings"]
    assert isinstance(timings, dict)
    # llama.cpp's own perf lines, printed by the arm64 binary under qemu: its count of the
    # prompt is the engine's, and it decoded the tokens the engine streamed.
    assert timings["prefill_tokens"] == record["input_tokens"]
    assert record["output_tokens"] == 4 and timings["decode_tokens"] == 3
    # The provenance names the arm64 build that ran: the binary, the commit, the target.
    run = load_run(tmp_path / "virtual-s24" / "run")
    build = run.provenance_of(run.measured[0])["engine"]["build"]
    info = crossbuild.build_info_of(arm64_cli)
    assert info is not None
    assert "aarch64" in build["target"], build  # what the binary itself says it was built for
    assert build["binary_sha256"] == _sha256(arm64_cli)
    assert info["llama_cpp_commit"] in build["binary_built"]
    assert f"-march={info['arch']}" in build["binary_built"]
    # Greedy decoding of the same prompt on the host's build: the same text, or the same up
    # to a token where the host itself sees a near tie. The two builds compute the same
    # model with other kernels (NEON and i8mm against AVX-512, sums in another order), so
    # logits differ in their last bits, and greedy decoding follows the other branch where
    # two tokens are that close.
    host_scenario, (host,) = _run(tmp_path, "host")
    assert host["status"] == "ok" and host["input_tokens"] == record["input_tokens"]
    phone_text, host_text = str(record["output_text"]), str(host["output_text"])
    if phone_text != host_text:
        _assert_a_near_tie(host_scenario, phone_text, host_text)


def _assert_a_near_tie(scenario: Path, phone_text: str, host_text: str) -> None:
    from devicelab_llamacpp import LlamaCppEngine

    from devicelab import GenerationRequest, TokenStream
    from devicelab._runtime.prompts import build_prompts
    from devicelab.testing import plan_scenario

    plan = plan_scenario(scenario)
    model = plan.models[0]
    engine = model.engine_cls(None, model.spec, model.options)  # type: ignore[arg-type]
    assert isinstance(engine, LlamaCppEngine)
    engine.load()
    try:
        (prompt,) = build_prompts(plan, engine).values()
        result = engine.generate(
            GenerationRequest(prompt.messages, 4, top_logprobs=5), TokenStream()
        )
        assert result.text == host_text
        phone, host = engine.tokenize(phone_text), engine.tokenize(host_text)
        at = next(i for i, (a, b) in enumerate(zip(phone, host, strict=False)) if a != b)
        assert at > 0, "the first token differs: not a near tie"
        top = result.top_logprobs[at]
        chosen = engine.detokenize([phone[at]])
        assert chosen in top, (at, chosen, top)
        # Within a few percent of the host's own choice in probability.
        assert max(top.values()) - top[chosen] < 0.2, (at, chosen, top)
    finally:
        engine.close()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_llama_prints_the_cached_build(
    arm64_cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicelab.testing import run_cli

    code = run_cli(["android", "build-llama", "--device", str(ROOT / "devices" / "s24.toml")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == str(arm64_cli)
    assert "for armv8.6-a+dotprod+i8mm+fp16" in out.err  # what was built, for the S24's cores


def test_build_llama_without_the_cross_compiler_names_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicelab.testing import run_cli

    monkeypatch.setattr(crossbuild, "find_arm64", lambda *a, **k: None)
    real_which = shutil.which
    monkeypatch.setattr(
        crossbuild.shutil, "which", lambda name: None if "aarch64" in name else real_which(name)
    )
    assert run_cli(["android", "build-llama", "--arch", "armv8.2-a+dotprod+fp16"]) == 2
    assert "apt-get install g++-aarch64-linux-gnu" in capsys.readouterr().err
