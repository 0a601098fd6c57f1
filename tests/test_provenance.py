"""Provenance: run.json says which devicelab, plugins, host, scenario, engine build, model file
and device made a run's numbers; each record names its load's entry; compare and gate print
what differs between two runs."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import BUILTINS, WordEngine, run_cli, write_scenario

import devicelab
from devicelab import _provenance as provenance
from devicelab import load_run, sha256_file
from devicelab._plugins import Registry
from devicelab._rundir import RUN_META, TRIALS, read_jsonl
from devicelab._runtime.pipeline import run_pipeline

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEVICELAB_CACHE", str(cache))
    yield cache


# --- sha256, cached --------------------------------------------------------------------------


def test_sha256_of_a_small_file_is_hashlibs(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    f.write_bytes(data)
    assert sha256_file(f) == hashlib.sha256(data).hexdigest()


def test_sha256_comes_from_the_cache_while_size_and_mtime_are_unchanged(
    tmp_path: Path, private_cache: Path
) -> None:
    f = tmp_path / "model.gguf"
    f.write_bytes(b"A" * 1000)
    first = sha256_file(f)
    assert (private_cache / provenance.HASH_CACHE).is_file()
    st = f.stat()
    # Same size, mtime put back: the cache cannot tell, so the cached digest is returned
    # (which proves the file was not read again).
    f.write_bytes(b"B" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(f) == first
    # A new mtime: hashed again.
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sha256_file(f) == hashlib.sha256(b"B" * 1000).hexdigest()
    # A new size (mtime put back to the cached one): hashed again.
    st = f.stat()
    f.write_bytes(b"C" * 999)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(f) == hashlib.sha256(b"C" * 999).hexdigest()


def test_a_broken_cache_file_is_recomputed_not_an_error(
    tmp_path: Path, private_cache: Path
) -> None:
    private_cache.mkdir()
    (private_cache / provenance.HASH_CACHE).write_text("{not json")
    f = tmp_path / "m.bin"
    f.write_bytes(b"x")
    assert sha256_file(f) == hashlib.sha256(b"x").hexdigest()
    assert json.loads((private_cache / provenance.HASH_CACHE).read_text())  # rewritten whole


def test_a_model_directory_has_a_size_and_a_digest_of_its_files(tmp_path: Path) -> None:
    d = tmp_path / "mlc-model"
    (d / "sub").mkdir(parents=True)
    (d / "mlc-chat-config.json").write_text("{}")
    (d / "sub" / "params_shard_0.bin").write_bytes(b"\0" * 10)
    info = provenance.file_info(d)
    assert info["size_bytes"] == 12 and info["files"] == 2
    before = info["sha256"]
    (d / "sub" / "params_shard_0.bin").write_bytes(b"\1" * 10)
    assert provenance.file_info(d)["sha256"] != before


# --- git -------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_git_commit_and_dirty_flag_of_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert provenance.git_info(repo) == {"commit": head, "dirty": False}
    (repo / "runs").mkdir()
    (repo / "runs" / "out.json").write_text("{}")  # untracked run output: not dirty
    assert provenance.git_info(repo) == {"commit": head, "dirty": False}
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_info(repo) == {"commit": head, "dirty": True}
    # A directory inside a checkout (a venv's site-packages, say) is not itself one.
    assert provenance.git_info(repo / "runs") is None


def test_a_directory_outside_git_gives_null(tmp_path: Path) -> None:
    assert provenance.git_info(tmp_path) is None


def test_without_git_installed_the_commit_is_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert provenance.git_info(Path(devicelab.__file__).parents[1]) is None


# --- host, software, scenario ------------------------------------------------------------------


def test_host_fields_are_this_machines() -> None:
    host = provenance.host_info()
    assert host["cores_logical"] == os.cpu_count()
    assert 1 <= host["cores_physical"] <= host["cores_logical"]
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    assert host["governor"] == (gov.read_text().strip() if gov.is_file() else None)
    assert host["kernel"] == platform.release()
    assert host["python"].endswith(platform.python_version())
    if Path("/proc/cpuinfo").is_file() and "model name" in Path("/proc/cpuinfo").read_text():
        assert host["cpu_model"] and host["cpu_model"] in Path("/proc/cpuinfo").read_text()


def test_every_loaded_plugin_is_named_with_its_distribution_and_version() -> None:
    plugins = provenance.plugin_info()
    assert set(plugins) == set(BUILTINS.split(","))
    version = importlib.metadata.version("devicelab")
    assert plugins["llamacpp"] == {"distribution": "devicelab", "version": version}
    assert provenance.devicelab_info()["version"] == version


# --- a run -----------------------------------------------------------------------------------

MODEL_SCENARIO = """\
[scenario]
name = "prov"
repetitions = 1
warmup = 0

[[models]]
name = "mine"
engine = "words"
quant = "none"
path = "weights.bin"

[[models]]
name = "words-b"

[tasks]
kinds = ["SUMM"]
documents = "corpus.jsonl"
max_output_tokens = 4

[context]
sections = 1
lengths = [10]

[telemetry]
enabled = false
"""


@pytest.fixture
def scenario(tmp_path: Path, words_scenario: Callable[..., Path]) -> Path:
    words_scenario()  # writes corpus.jsonl
    (tmp_path / "weights.bin").write_bytes(b"weights" * 100)
    return write_scenario(tmp_path, MODEL_SCENARIO, "prov.toml")


def _run(scenario: Path, registry: Registry, out: Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the scenario into ``out``; its run.json."""
    run_pipeline(scenario, registry, out=out, resume=resume)
    return json.loads((out / RUN_META).read_text())


def test_run_json_and_records_carry_provenance(
    tmp_path: Path, scenario: Path, words_registry: Registry
) -> None:
    out = tmp_path / "run"
    meta = _run(scenario, words_registry, out)
    prov = meta["provenance"]
    assert prov["scenario"] == {
        "path": str(scenario),
        "sha256": hashlib.sha256(scenario.read_bytes()).hexdigest(),
    }
    assert prov["devicelab"]["version"] == importlib.metadata.version("devicelab")
    assert prov["host"] == provenance.host_info()
    assert "llamacpp" in prov["plugins"]
    records = list(read_jsonl(out / TRIALS))
    loads = prov["loads"]
    assert len(loads) == 2  # one per model load
    assert {r["provenance"] for r in records} == set(loads)
    by_model = {e["model"]["name"]: e for e in loads.values()}
    weights = tmp_path / "weights.bin"
    assert by_model["mine"]["model"] == {
        "name": "mine",
        "quant": "none",
        "path": str(weights),
        "size_bytes": 700,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert by_model["words-b"]["model"] == {"name": "words-b", "quant": "none"}
    entry = by_model["mine"]
    assert entry["engine"] == {"name": "words", "build": {}}  # the default build_info
    assert entry["device"] == "host" and entry["device_info"] == records[0]["device_info"]
    # This process ran the sessions too: the run's host, devicelab and plugins are not repeated.
    assert not set(provenance.SESSION_KEYS) & set(entry)
    run = load_run(out)
    full = run.provenance_of(run.records[0])
    assert full["host"] == prov["host"] and full["model"]["name"] == records[0]["model"]


def test_an_engine_whose_build_info_fails_still_runs_its_trials(
    tmp_path: Path,
    scenario: Path,
    words_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: WordEngine) -> dict[str, str]:
        raise OSError("no such binary")

    monkeypatch.setattr(WordEngine, "build_info", broken)
    out = tmp_path / "run"
    loads = _run(scenario, words_registry, out)["provenance"]["loads"]
    records = list(read_jsonl(out / TRIALS))
    assert records and all(r["status"] == "ok" for r in records)
    [error] = {e["engine"]["build"]["error"] for e in loads.values()}
    assert error.startswith("OSError: no such binary")


def test_resuming_with_the_same_build_adds_no_entry(
    tmp_path: Path, scenario: Path, words_registry: Registry
) -> None:
    out = tmp_path / "run"
    kept = _run(scenario, words_registry, out)
    records = list(read_jsonl(out / TRIALS))

    def keep(model: str) -> None:
        (out / TRIALS).write_text(
            "".join(json.dumps(r) + "\n" for r in records if r["model"] == model)
        )

    keep("mine")  # words-b's trials to do again
    assert _run(scenario, words_registry, out, resume=True) == kept
    # The weights changed: a new entry, and the new records name it.
    (tmp_path / "weights.bin").write_bytes(b"other")
    keep("words-b")
    loads = _run(scenario, words_registry, out, resume=True)["provenance"]["loads"]
    assert len(loads) == 3
    again = {r["provenance"] for r in read_jsonl(out / TRIALS) if r["model"] == "mine"}
    assert len(again) == 1 and again.isdisjoint(kept["provenance"]["loads"])
    assert loads[again.pop()]["model"]["sha256"] == hashlib.sha256(b"other").hexdigest()


def test_an_old_run_json_without_provenance_still_reads(
    tmp_path: Path, scenario: Path, words_registry: Registry
) -> None:
    out = tmp_path / "run"
    meta = _run(scenario, words_registry, out)
    del meta["provenance"]
    (out / RUN_META).write_text(json.dumps(meta))
    records = [{k: v for k, v in r.items() if k != "provenance"} for r in read_jsonl(out / TRIALS)]
    (out / TRIALS).write_text("".join(json.dumps(r) + "\n" for r in records))
    run = load_run(out)
    assert run.provenance == {} and run.provenance_of(run.records[0]) == {}
    assert run.records[0].identity.provenance == ""
    assert run.records[0].to_json()["provenance"] == ""


# --- compare and gate ------------------------------------------------------------------------


def _edit(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((run / RUN_META).read_text())
    change(meta)
    (run / RUN_META).write_text(json.dumps(meta, indent=2))


@pytest.fixture
def two_runs(tmp_path: Path, scenario: Path, words_registry: Registry) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    _run(scenario, words_registry, a)
    _run(scenario, words_registry, b)
    return a, b


def _build(meta: dict[str, Any], model: str) -> dict[str, Any]:
    for entry in meta["provenance"]["loads"].values():
        if entry["model"]["name"] == model:
            build: dict[str, Any] = entry["engine"]["build"]
            return build
    raise AssertionError(model)


def test_two_runs_of_the_same_build_differ_in_nothing(two_runs: tuple[Path, Path]) -> None:
    a, b = (json.loads((r / RUN_META).read_text()) for r in two_runs)
    # The scenario path and sha256 are the same file's: nothing differs.
    assert provenance.differences(a, b) == []


def test_compare_and_gate_print_the_provenance_fields_that_differ(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs

    a_git = json.loads((a / RUN_META).read_text())["provenance"]["devicelab"]["git"]
    b_dirty = True if a_git is None else not a_git["dirty"]

    def change(meta: dict[str, Any]) -> None:
        meta["provenance"]["devicelab"]["git"] = {"commit": "f00d" * 10, "dirty": b_dirty}
        meta["provenance"]["host"]["governor"] = "powersave"
        _build(meta, "mine")["llama_cpp_python"] = "0.3.99"

    _edit(b, change)
    assert run_cli(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    block = out[out.index("provenance differs") :].splitlines()
    assert block[0] == "provenance differs (A -> B):"
    a_commit = "-" if a_git is None else a_git["commit"]
    a_dirty = "-" if a_git is None else json.dumps(a_git["dirty"])
    governor = provenance.host_info()["governor"] or "-"
    assert block[1:] == [
        f"  devicelab.git.commit: {a_commit} -> {'f00d' * 10}",
        f"  devicelab.git.dirty: {a_dirty} -> {json.dumps(b_dirty)}",
        f"  host.governor: {governor} -> powersave",
        "  models.mine/none.engine.build.llama_cpp_python: - -> 0.3.99",
    ]
    code = run_cli(["gate", str(a), str(b), "--fail", "otps:median:5%"])
    assert code == 3  # one repetition: inconclusive
    err = capsys.readouterr().err
    assert "provenance differs (baseline -> candidate):" in err
    assert "  models.mine/none.engine.build.llama_cpp_python: - -> 0.3.99" in err


def test_compare_says_when_a_run_has_no_provenance(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    _edit(a, lambda meta: meta.pop("provenance"))
    assert run_cli(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "provenance: A has none (run.json written before devicelab recorded it)" in out


def test_loads_of_one_model_on_several_phones_compare_as_the_list_of_their_values() -> None:
    def meta(*builds: str) -> dict[str, Any]:
        loads = {
            f"k{i}": {"model": {"name": "m", "quant": "q"}, "device": f"h{i}/s24", "build": b}
            for i, b in enumerate(builds)
        }
        return {"provenance": {"loads": loads}}

    assert provenance.differences(meta("1", "1"), meta("1")) == []
    assert provenance.differences(meta("1", "2"), meta("2")) == [
        ("models.m/q.build", ["1", "2"], "2")
    ]
    # A model only one run has is not a provenance difference (compare reports it apart).
    assert provenance.differences(meta("1"), {"provenance": {"loads": {}}}) == []


def test_the_pytest_gate_reports_the_provenance_differences(
    two_runs: tuple[Path, Path], pytester: pytest.Pytester
) -> None:
    a, b = two_runs
    _edit(b, lambda meta: _build(meta, "mine").update(ggml_commit="0c1e570"))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(
        "--devicelab-baseline",
        str(a),
        "--devicelab-candidate",
        str(b),
        "--devicelab-fail",
        "otps:median:5%",
    )
    result.stdout.fnmatch_lines(
        [
            "devicelab: provenance differs (baseline -> candidate):",
            "  models.mine/none.engine.build.ggml_commit: - -> 0c1e570",
        ]
    )
