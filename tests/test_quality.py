"""The scoring process and the [quality] wiring: metrics from an installed test plugin."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import psutil
import pytest
from wordsplugin import WORDS_SCENARIO, run_cli

from devicelab import Scored, UsageError
from devicelab._quality import Scorer
from devicelab._rundir import TRIALS, read_jsonl
from devicelab._scenario import load_scenario


@pytest.fixture
def metrics_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The WordEngine and the test metrics, installed through real entry points: the scoring
    process finds them the way it finds a user's plugins."""
    info = tmp_path / "site" / "devicelab_qtest-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: devicelab-qtest\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[devicelab]\nwords = wordsplugin:WORDS_PLUGIN\nqtest = qualityplugin:PLUGIN\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # The built-ins the hermetic fixture chose, plus these two.
    builtins = os.environ["DEVICELAB_PLUGINS"]
    monkeypatch.setenv("DEVICELAB_PLUGINS", f"{builtins},words,qtest")


def _children() -> list[psutil.Process]:
    """This process's children, but multiprocessing's own resource tracker (it stays)."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and "resource_tracker" not in " ".join(p.cmdline())
    ]


@pytest.mark.usefixtures("metrics_installed")
def test_scorer_runs_metrics_in_a_process_of_its_own_and_stops() -> None:
    with Scorer({"answers": {"scale": 2.0}}) as scorer:
        pid = scorer.pid
        assert scorer.running and pid != os.getpid()
        got = scorer.score(Scored("QS", ("why is it so?", "how?"), ()))
        again = scorer.score(Scored("QA", ("one",), ()))
    assert got.values == {"answers": 4.0, "first_words": 8.0, "scorer_pid": float(pid or 0)}
    assert again.values["answers"] == 2.0 and not got.errors
    assert not scorer.running
    assert pid not in [p.pid for p in _children()]


@pytest.mark.usefixtures("metrics_installed")
def test_a_metric_that_cannot_load_stops_the_scorer_with_a_usage_error() -> None:
    scorer = Scorer({"answers": {}, "noload": {}})
    with pytest.raises(UsageError, match=r"'noload' failed to load.*judge.gguf is not there"):
        scorer.start()
    assert not scorer.running and not _children()


CORPUS = [
    {"id": "calm", "text": "one two three four five six seven eight nine ten " * 4,
     "qa": [{"question": "what is fine?", "answer": "four five"}]},
    {"id": "loud", "text": "ten nine eight seven six five four three two one " * 4,
     "qa": [{"question": "what goes boom?", "answer": "two one"}]},
]  # fmt: skip


def _scenario(tmp_path: Path, kinds: str, quality: str) -> Path:
    with (tmp_path / "corpus.jsonl").open("w") as fh:
        for doc in CORPUS:
            fh.write(json.dumps(doc) + "\n")
    body = WORDS_SCENARIO.format(model="words-a", reps=1, warmup=0, timeout=300, kinds=kinds)
    path = tmp_path / "q.toml"
    path.write_text(body + "\n" + textwrap.dedent(quality))
    return path


@pytest.mark.usefixtures("metrics_installed")
def test_run_records_quality_and_a_failing_metric_leaves_the_trial_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quality = """\
        [quality]
        metrics = ["answers", "overlap"]

        [quality.options.answers]
        scale = 10.0
        """
    path = _scenario(tmp_path, '["QA"]', quality)
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 0
    records = list(read_jsonl(tmp_path / "run" / TRIALS))
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    for r in records:
        q = r["quality"]
        # The task's own metrics and the scenario's, side by side; scored in another process.
        assert q["intent_ok"] == 0.0 and q["answers"] == 10.0
        assert q["scorer_pid"] != os.getpid()
        if r["doc_id"] == "loud":  # its question makes "overlap" raise
            assert "overlap" not in q
            assert "cannot score an explosion" in r["quality_errors"]["overlap"]
        else:
            assert 0.0 <= q["overlap"] <= 1.0 and r["quality_errors"] == {}
    out = capsys.readouterr().out
    assert "Quality" in out and "overlap" in out
    assert not _children()  # the scorer stopped with the run
    resolved = (tmp_path / "run" / "scenario.toml").read_text()
    assert "answers" in resolved and "scale = 10.0" in resolved


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], kinds: str, quality: str) -> str:
    """What ``devicelab run`` prints when it refuses (exit 2) the scenario with these task
    kinds and [quality] table; its run goes to tmp_path/run."""
    path = _scenario(tmp_path, kinds, quality)
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    return capsys.readouterr().err


@pytest.mark.usefixtures("metrics_installed")
def test_unknown_metric_exits_2_listing_the_registered_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(tmp_path, capsys, '["QA"]', '[quality]\nmetrics = ["blue"]\n')
    assert "[quality] metrics: unknown metric 'blue'" in err
    listed = err.split("Registered metrics: ")[1]
    for name in ("answers", "bleu", "noload", "overlap", "rouge", "self_bleu", "sts"):
        assert name in listed
    assert "Traceback" not in err


@pytest.mark.usefixtures("metrics_installed")
def test_metrics_needing_references_on_a_corpus_without_them_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The corpus has qa answers but no summaries: SUMM cannot be compared with anything.
    quality = '[quality]\nmetrics = ["answers", "overlap"]\n'
    err = " ".join(_refused(tmp_path, capsys, '["QA", "SUMM"]', quality).split())
    assert "metrics overlap compare answers with references" in err
    assert "task SUMM has none for documents calm, loud" in err
    assert "Add 'summary' to those documents" in err
    # A metric that needs no references is fine on the same corpus.
    path = _scenario(tmp_path, '["QA", "SUMM"]', '[quality]\nmetrics = ["answers"]\n')
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run2")]) == 0


@pytest.mark.usefixtures("metrics_installed")
def test_a_metric_that_cannot_load_fails_the_run_before_the_first_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(tmp_path, capsys, '["QA"]', '[quality]\nmetrics = ["noload"]\n')
    assert "'noload' failed to load" in err and "Traceback" not in err
    assert not list(read_jsonl(tmp_path / "run" / TRIALS))
    assert not _children()


@pytest.mark.usefixtures("metrics_installed")
def test_metric_options_are_checked_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quality = '[quality]\nmetrics = ["answers"]\n[quality.options.answers]\nscal = 2.0\n'
    err = " ".join(_refused(tmp_path, capsys, '["QA"]', quality).split())
    assert "[quality.options.answers]: unknown option 'scal'" in err and "scale" in err


def test_scenario_quality_table_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    for quality, message in (
        ('metrics = "bleu"', r"\[quality\] metrics: must be a list"),
        ('metrics = ["bleu", "bleu"]', "lists a metric twice"),
        ('metrics = ["bleu"]\n[quality.options.rouge]\nstemmer = false', r"'rouge' is not in"),
        ('metric = ["bleu"]', r"\[quality\] metric: is not a known key"),
    ):
        path.write_text(
            '[scenario]\nname = "x"\n[[models]]\nname = "m"\n[tasks]\nkinds = ["QA"]\n'
            'documents = "d"\n[context]\nlengths = [10]\nsections = 1\n[quality]\n' + quality
        )
        with pytest.raises(UsageError, match=message):
            load_scenario(path)
    path.write_text(path.read_text().replace("metric = ", "metrics = "))
    assert load_scenario(path).quality_metrics == ("bleu",)
