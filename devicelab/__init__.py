"""devicelab: a plugin-based device lab for benchmarking small language models on phones.

Plugins import what they need from here; the names below are the public API.
"""

from __future__ import annotations

from .api import (
    Collector,
    CollectorFactory,
    CorpusSpec,
    Device,
    DeviceInfo,
    DeviceType,
    Document,
    Engine,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    QAPair,
    Task,
    TaskPrompt,
    TokenStream,
)
from .errors import (
    CorpusError,
    DevicelabError,
    DeviceLostError,
    EngineError,
    MissingDependencyError,
    ModelError,
    PluginError,
    RunDirError,
    ScenarioError,
    TrialError,
    TrialTimeout,
    UsageError,
)
from .hookspecs import hookimpl
from .runs import Run, load_run

__version__ = "0.1.0"

__all__ = [
    "Collector",
    "CollectorFactory",
    "CorpusError",
    "CorpusSpec",
    "Device",
    "DeviceInfo",
    "DeviceLostError",
    "DeviceType",
    "DevicelabError",
    "Document",
    "Engine",
    "EngineError",
    "GenerationRequest",
    "GenerationResult",
    "Message",
    "MissingDependencyError",
    "ModelError",
    "ModelSpec",
    "PluginError",
    "QAPair",
    "Run",
    "RunDirError",
    "ScenarioError",
    "Task",
    "TaskPrompt",
    "TokenStream",
    "TrialError",
    "TrialTimeout",
    "UsageError",
    "__version__",
    "hookimpl",
    "load_run",
]
