"""The WordEngine test plugin and scenario helpers, shared by the core's tests.

A module of its own (not conftest.py) so test files can import it by a unique name.
"""

from __future__ import annotations

import contextlib
import json
import signal
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtual_android.pytest_plugin import free_port  # noqa: F401 - the tests import it from here

import devicelab
from devicelab import (
    Engine,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    TokenStream,
)
from devicelab.testing import run_cli  # noqa: F401 - the tests import it from here


class WordEngine(Engine):
    """A tiny engine plugin for scheduler tests: one token per word, echoes words back.

    It is a real plugin (registered through the hooks), so the scheduler is tested through
    the same door as llama.cpp, without the model's seconds. Behaviour is steered by the
    model name: ``fail-load``, ``fail-trial`` (every 2nd generate raises), ``slow`` (sleeps
    past any short timeout), ``interrupt`` (Ctrl-C on the 3rd generate, once per process),
    ``swallow-ctrl-c`` (the same, but the engine drops it, as a ctypes callback does), ``lost-once`` (every odd generate loses the device), ``cached`` (a prefix cache: a prompt
    seen before reports 1 prefilled token).
    """

    name = "words"
    device_kinds = ("host", "flaky")
    loads = 0
    interrupted = False
    swallowed = False
    generations = 0  # every generate of every instance (HotCollector's cap follows it)

    @dataclass(frozen=True)
    class Options:
        n_ctx: int = 4096
        delay_s: float = 0.0

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self.calls = 0
        self.seen: set[str] = set()  # the prompts a "cached" model keeps, as a prefix cache

    def load(self) -> None:
        WordEngine.loads += 1
        if self.model.name == "fail-load":
            raise RuntimeError("weights are corrupt")

    def context_window(self) -> int:
        return int(self.options.n_ctx)

    def tokenize(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join("w" * t for t in tokens)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        self.calls += 1
        WordEngine.generations += 1
        if self.model.name == "interrupt" and self.calls == 3 and not WordEngine.interrupted:
            WordEngine.interrupted = True
            raise KeyboardInterrupt
        if self.model.name == "swallow-ctrl-c" and self.calls == 3 and not WordEngine.swallowed:
            WordEngine.swallowed = True
            # What ctypes does with an exception raised inside a callback: drops it.
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        if self.model.name == "fail-trial" and self.calls % 2 == 0:
            raise RuntimeError("engine crashed")
        if self.model.name == "lost-once" and self.calls % 2 == 1:
            raise devicelab.DeviceLostError("transport closed")
        stream.sent()
        words = request.messages[-1].content.split()[: request.max_tokens]
        for _ in words:
            if self.model.name == "slow":
                time.sleep(0.02)
            elif self.options.delay_s:
                time.sleep(self.options.delay_s)
            stream.token()
        prompt = "\n".join(m.content for m in request.messages)
        input_tokens = self.prompt_tokens(request.messages)
        prefilled = None
        if self.model.name == "cached":
            # As MLC's radix cache: a prompt seen before is served from the cache but its
            # last token, which the engine must still evaluate.
            prefilled = 1 if prompt in self.seen else input_tokens
            self.seen.add(prompt)
        return GenerationResult(
            # Backwards: the prompt's words in order would be an echo, which the tasks strip.
            text=" ".join(reversed(words)),
            input_tokens=input_tokens,
            output_tokens=len(words),
            engine_timings={"calls": self.calls},
            prefilled_tokens=prefilled,
        )


class FlakyDevice(devicelab.Device):
    """A device that loses its connection when told to and comes back on reconnect."""

    kind = "flaky"
    reconnects = 0
    can_reconnect = True

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def reconnect(self, timeout_s: float) -> None:
        FlakyDevice.reconnects += 1
        if not FlakyDevice.can_reconnect:
            raise devicelab.DeviceLostError("no device after 0.0 s")


class FlakyType(devicelab.DeviceType):
    kind = "flaky"

    def discover(self) -> list[devicelab.DeviceInfo]:
        return []

    def accepts(self, name: str) -> bool:
        return name == "flaky"

    def open(self, name: str, profile: Any) -> devicelab.Device:
        return FlakyDevice(name, {})


class PowerCollector(devicelab.Collector):
    """Two watts, on USB power: energy is computed but marked unreliable."""

    name = "power"

    def sample(self) -> dict[str, devicelab.Value]:
        return {"power_w": 2.0, "on_battery": False}


class HotCollector(devicelab.Collector):
    """A device that cools down and may throttle; steered by class attributes (tests reset them).

    ``start_c`` is the first temperature read (None: no ``temp_c`` at all) and each read lowers
    it by ``step_c``. ``thermal_status`` is reported as given (None: not reported).
    ``cap_from_generation`` reports ``cpu_policy0_max_mhz`` 2000 until WordEngine has run that
    many generations in total, 1500 from then on (None: not reported).
    """

    name = "hot"
    start_c: float | None = None
    step_c = 1.0
    thermal_status: int | None = None
    cap_from_generation: int | None = None

    def __init__(self) -> None:
        self.reads = 0

    def sample(self) -> dict[str, devicelab.Value]:
        out: dict[str, devicelab.Value] = {}
        if HotCollector.start_c is not None:
            out["temp_c"] = HotCollector.start_c - HotCollector.step_c * self.reads
            self.reads += 1
        if HotCollector.thermal_status is not None:
            out["thermal_status"] = HotCollector.thermal_status
        cap = HotCollector.cap_from_generation
        if cap is not None:
            out["cpu_policy0_max_mhz"] = 1500 if WordEngine.generations >= cap else 2000
        return out


class CountWords(devicelab.Task):
    """COUNT: echo the context; its metric counts the words and how many came from it."""

    kind = "COUNT"

    def prompts(self, document: devicelab.Document, context: str) -> list[devicelab.TaskPrompt]:
        return [devicelab.TaskPrompt("count", (Message("user", context),), fields={"doc": context})]

    def score(self, prompt: devicelab.TaskPrompt, output: str) -> dict[str, float]:
        words = output.split()
        seen = set(prompt.fields["doc"].split())
        return {"words": len(words), "from_context": sum(w in seen for w in words) / len(words)}


class WordsPlugin:
    @devicelab.hookimpl
    def devicelab_register_tasks(self, register: Callable[[devicelab.Task], None]) -> None:
        register(CountWords())

    @devicelab.hookimpl
    def devicelab_register_devices(self, register: Callable[[devicelab.DeviceType], None]) -> None:
        register(FlakyType())

    @devicelab.hookimpl
    def devicelab_register_collectors(self, register: Callable[..., None]) -> None:
        register("power", lambda device: PowerCollector() if device.kind == "flaky" else None)
        register("hot", lambda device: HotCollector() if device.kind == "flaky" else None)

    @devicelab.hookimpl
    def devicelab_register_engines(self, register: Callable[[type[Engine]], None]) -> None:
        register(WordEngine)

    @devicelab.hookimpl
    def devicelab_register_models(self, register: Callable[[ModelSpec], None]) -> None:
        for name in (
            "words-a",
            "words-b",
            "fail-load",
            "fail-trial",
            "slow",
            "interrupt",
            "swallow-ctrl-c",
            "lost-once",
            "cached",
        ):
            register(ModelSpec(name, "words", "none"))


def make_corpus(path: Path, docs: int = 2, words: int = 60) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(docs):
            text = " ".join(f"word{j}" for j in range(words))
            qa = [{"question": f"q{k} of doc {i}?", "answer": f"a{k}"} for k in range(2)]
            fh.write(json.dumps({"id": f"doc{i}", "text": text, "qa": qa}) + "\n")
    return path


def install_plugin(
    site: Path, name: str, source: str, dist: str | None = None, module: str | None = None
) -> None:
    """Make an installed distribution in ``site`` (a directory on ``sys.path``) with the
    ``devicelab`` entry point ``name`` = ``module`` (default ``devicelab_<name>_test``), whose
    code is ``source``, as pip would."""
    module = module or f"devicelab_{name}_test"
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist or module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist or module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[devicelab]\n{name} = {module}\n")


def write_scenario(tmp: Path, body: str, name: str = "s.toml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


WORDS_SCENARIO = """\
[scenario]
name = "t"
repetitions = {reps}
warmup = {warmup}
timeout_s = {timeout}

[[models]]
name = "{model}"

[tasks]
kinds = {kinds}
documents = "corpus.jsonl"
max_output_tokens = 8

[context]
sections = 2
lengths = [10, 20]

[telemetry]
interval_s = 0.01
"""


WORDS_PLUGIN = WordsPlugin()


# The built-in plugins every test loads (tests/conftest.py keeps other installed ones out).
BUILTINS = "host,llamacpp,docassist,android,virtual,quality,geval,openai,mlc,ray,store"
