"""The G-Eval-style judge: prompts, the probability weighting, reply parsing, and real judge
runs with the shipped SmolLM2 (a poor judge: the tests check the mechanics, not its taste)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from devicelab_geval import (
    GEval,
    build_messages,
    criteria_for,
    parse_score,
    score_reply,
    weighted_score,
)

from devicelab import Engine, MetricContext, ScenarioError, Scored
from devicelab import _plugins as plugin_manager
from devicelab._cli import main
from devicelab._engines import open_engine
from devicelab._options import parse_options
from devicelab._rundir import TRIALS, read_jsonl
from devicelab.testing import make_scenario

JUDGE = "smollm2-135m-instruct"
DOC = (
    "The harbour authority of Lindmouth voted on Thursday to close the old ferry pier for "
    "repairs. The pier, built in 1911, has cracks in three of its concrete piles. Ferries "
    "will use the fishing quay until the work ends in March."
)
SUMMARY = "Lindmouth closes its old ferry pier for repairs until March; ferries move."


def lp(p: float) -> float:
    return math.log(p)


# --- prompts -----------------------------------------------------------------------------


def test_default_criteria_per_task_kind() -> None:
    names = {t: [c.name for c in criteria_for(t)] for t in ("SUMM", "QA", "QS", "TRANSLATE")}
    assert names == {
        "SUMM": ["coherence", "consistency", "fluency", "relevance"],
        "QA": ["correctness", "relevance"],
        "QS": ["relevance", "answerability"],
        "TRANSLATE": ["relevance"],
    }
    assert [c.name for c in criteria_for("SUMM", ["fluency"])] == ["fluency"]


def test_summary_prompt_has_definition_steps_document_request_and_answer() -> None:
    item = Scored("SUMM", (SUMMARY,), ("a reference summary",), DOC, "Summarize the document.")
    consistency = criteria_for("SUMM")[1]
    (message,) = build_messages(item, consistency, DOC)
    text = message.content
    assert message.role == "user"
    assert "Consistency (1-5): " + consistency.definition in text
    for step in consistency.steps:
        assert step in text
    assert "score from 1 to 5" in text
    assert f"Document:\n{DOC}" in text
    assert "Request:\nSummarize the document." in text
    assert f"Summary:\n{SUMMARY}" in text
    assert text.rstrip().endswith("- Consistency:")
    # SUMM is judged on the source, not the reference summary.
    assert "a reference summary" not in text


def test_qa_correctness_uses_the_reference_answer_and_relevance_does_not() -> None:
    item = Scored("QA", ("In March.",), ("The work ends in March.",), DOC, "When does it end?")
    correctness, relevance = criteria_for("QA")
    with_ref = build_messages(item, correctness, DOC)[0].content
    assert "Reference answer:\nThe work ends in March." in with_ref
    assert "Answer:\nIn March." in with_ref
    assert "Reference answer" not in build_messages(item, relevance, DOC)[0].content
    no_ref = Scored("QA", ("In March.",), (), DOC, "When does it end?")
    assert "Reference answer" not in build_messages(no_ref, correctness, DOC)[0].content


def test_suggested_questions_are_judged_as_one_set() -> None:
    qs = ("Why is the pier closed?", "Where do ferries go?")
    item = Scored("QS", qs, (), DOC, "Suggest questions.")
    text = build_messages(item, criteria_for("QS")[1], DOC)[0].content
    assert "Suggested questions:\n- Why is the pier closed?\n- Where do ferries go?" in text
    assert "Answerability (1-5)" in text and "set" in text


# --- the weighting and the parsing ---------------------------------------------------------


def test_weighted_score_is_the_probability_weighted_mean() -> None:
    assert weighted_score({"4": lp(0.6), "5": lp(0.3), "3": lp(0.1)}) == pytest.approx(4.2)


def test_weighted_score_renormalises_over_the_digits_present() -> None:
    # "The" and "\n" are not scores; 1 and 2 are missing: the rest is renormalised.
    top = {"4": lp(0.3), "The": lp(0.5), "5": lp(0.1), "\n": lp(0.05)}
    assert weighted_score(top) == pytest.approx((4 * 0.3 + 5 * 0.1) / 0.4)
    # The same digit with and without a leading space is one score.
    assert weighted_score({" 2": lp(0.25), "2": lp(0.25), "4": lp(0.5)}) == pytest.approx(3.0)
    assert weighted_score({"7": lp(0.9), "ok": lp(0.1)}) is None


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 4", 4),
        ("4/5", 4),
        ("I'd give it a 4", 4),
        ("Coherence: 3 out of 5.", 3),
        ("2", 2),
        (" 5.", 5),
        ("Rating - 1 (the summary is off topic)", 1),
        ("1. Read the document.\n2. The summary rates 3", 3),  # echoed steps are not scores
        ("score of 10", None),
        ("Excellent!", None),
        ("It is a 7", None),
        ("1.5", 1.5),
        ("Coherence (1-5): 4", 4),
        ("On a scale from 1 to 5, I'd give it 2.", 2),
        ("5.5 stars, then 3", 3),
    ],
)
def test_parse_score(reply: str, score: float | None) -> None:
    parsed = parse_score(reply)
    assert (parsed[0] if parsed else None) == score


def test_a_reply_that_continues_the_form_line_starts_with_its_score() -> None:
    # After the written "Coherence (1-5): ", "1. The" is a score of 1, not a list marker.
    assert parse_score("1. The summary", continues_line=True) == (1, 0)
    assert parse_score("1. The summary") is None


def test_score_reply_weights_the_token_that_carries_the_score() -> None:
    # Greedy decoding: each position's likeliest alternative is the token that was written.
    top = [
        {"Score": lp(0.9), "I": lp(0.1)},
        {":": lp(0.8), " is": lp(0.2)},
        {" ": lp(0.7), "\n": lp(0.3)},
        {"4": lp(0.6), "5": lp(0.3), "3": lp(0.1)},
        {".": lp(0.5), "<eos>": lp(0.4)},
    ]
    assert score_reply("Score: 4.", top) == pytest.approx((4.2, True))
    # No probabilities from the engine: the integer it wrote.
    assert score_reply("Score: 4.", []) == (4.0, False)
    assert score_reply("no idea", top[:1]) is None


def test_check_rejects_a_missing_judge_and_unknown_criteria() -> None:
    with pytest.raises(ScenarioError, match=r'model = "<a registered model name>"'):
        GEval.check(GEval.Options())
    with pytest.raises(ScenarioError, match=r"unknown 'wit'.*Known criteria: answerability"):
        GEval.check(GEval.Options(model=JUDGE, criteria=["fluency", "wit"]))
    GEval.check(GEval.Options(model=JUDGE, criteria=["fluency"]))


def test_geval_is_registered_and_off_by_default() -> None:
    registry = plugin_manager.get_registry()
    assert registry.metrics["geval"] == ("geval", GEval)
    assert GEval.needs_references is False
    # Options come from [quality.options.geval]; unknown keys are rejected by name.
    with pytest.raises(ScenarioError, match="unknown option 'judge'"):
        parse_options(GEval.Options, {"judge": JUDGE}, "[quality.options.geval]")


# --- a real judge ---------------------------------------------------------------------------


class RegistryContext(MetricContext):
    """Engines from the real registry (as the scoring process opens them), closed at the end."""

    def __init__(self) -> None:
        self.stack = ExitStack()

    def open_engine(self, model: str, device: str = "host") -> Engine:
        registry = plugin_manager.get_registry()
        # One thread: the tests share two cores with others; the judge's speed is not measured.
        options = {"n_ctx": 1024, "threads": 1}
        return self.stack.enter_context(open_engine(registry, model, device, options))


@pytest.fixture(scope="module")
def judge() -> Iterator[GEval]:
    context = RegistryContext()
    metric = GEval(GEval.Options(model=JUDGE, max_tokens=3))
    with context.stack:
        metric.load(context)
        yield metric
        metric.close()


def test_real_judge_scores_from_token_probabilities(judge: GEval) -> None:
    item = Scored("QA", ("In March.",), ("The work ends in March.",), DOC, "When does it end?")
    values = judge.score(item)
    assert set(values) == {"geval_correctness", "geval_relevance", "geval", "geval_weighted"}
    for key in ("geval_correctness", "geval_relevance"):
        assert 1.0 <= values[key] <= 5.0
    assert values["geval_weighted"] == 1.0  # llama.cpp gives token probabilities
    mean = (values["geval_correctness"] + values["geval_relevance"]) / 2
    assert values["geval"] == pytest.approx(mean, abs=1e-4)


def test_a_long_document_is_cut_to_the_judge_window(judge: GEval) -> None:
    engine = judge._engine
    assert engine is not None
    long_doc = " ".join([DOC] * 40)  # about 2,000 tokens: more than the judge's 1,024
    item = Scored("SUMM", (SUMMARY,), (), long_doc, "Summarize the document.")
    criterion = criteria_for("SUMM")[0]
    messages = judge._fit(engine, item, criterion)
    used = engine.prompt_tokens(messages)
    assert used + judge.options.max_tokens <= engine.context_window()
    assert used > engine.context_window() // 2  # cut, not dropped
    text = messages[0].content
    assert DOC[:60] in text and " [...]" in text and f"Summary:\n{SUMMARY}" in text
    short = Scored("SUMM", (SUMMARY,), (), DOC, "Summarize the document.")
    assert judge._fit(engine, short, criterion) == build_messages(short, criterion, DOC)


def test_an_empty_answer_is_not_judged(judge: GEval) -> None:
    assert judge.score(Scored("SUMM", ("  ",), (), DOC, "Summarize.")) == {}


# --- end to end -------------------------------------------------------------------------------


def geval_scenario(tmp_path: Path, judge: str) -> Path:
    """One SUMM trial of SmolLM2 on the host, judged by ``judge`` on two criteria."""
    return make_scenario(
        tmp_path, name="geval", kinds=["SUMM"], lengths=[60],
        model_keys={"engine": "llama.cpp", "quant": "q4_1"}, model_options={"n_ctx": 1024},
        tables={"quality": {
            "metrics": ["geval"],
            "options": {"geval": {"model": judge, "max_tokens": 3, "criteria": ["fluency", "relevance"]}},
        }},
    )  # fmt: skip


def run(tmp_path: Path, judge: str) -> int:
    try:
        main(["run", str(geval_scenario(tmp_path, judge))])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.e2e
def test_run_records_geval_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    try:
        path = geval_scenario(tmp_path, JUDGE)
        main(["run", str(path), "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    (record,) = read_jsonl(out / TRIALS)
    assert record["status"] == "ok", record["error"]
    quality = record["quality"]
    assert not record.get("quality_errors"), record.get("quality_errors")
    assert 1.0 <= quality["geval_fluency"] <= 5.0 and 1.0 <= quality["geval_relevance"] <= 5.0
    assert quality["geval_weighted"] == 1.0
    assert "geval_coherence" not in quality  # the scenario's criteria replace the defaults


@pytest.mark.e2e
def test_unregistered_judge_stops_the_run_naming_registered_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(tmp_path, "gpt-9-judge") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "gpt-9-judge" in err and JUDGE in err
    assert "Traceback" not in err
    # Stopped before the run began: no run directory at all.
    assert not list(tmp_path.rglob(TRIALS))
