"""devicelab: a plugin-based device lab for benchmarking small language models on phones.

Plugins import what they need from here; the names below are the public API.
"""

from __future__ import annotations

from ._record import TrialRecord
from ._rundir import RunData, RunDir, load_run
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
    Metric,
    MetricContext,
    ModelSpec,
    QAPair,
    Quantizer,
    QuantizeResult,
    Response,
    Scored,
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
from .executor import Executor
from .hookspecs import hookimpl
from .scheduler import DeviceSession, Plan, Reporter, RunOutcome, TrialOutput

__version__ = "0.1.0"

__all__ = [
    "Collector",
    "CollectorFactory",
    "CorpusError",
    "CorpusSpec",
    "Device",
    "DeviceInfo",
    "DeviceLostError",
    "DeviceSession",
    "DeviceType",
    "DevicelabError",
    "Document",
    "Engine",
    "EngineError",
    "Executor",
    "GenerationRequest",
    "GenerationResult",
    "Message",
    "Metric",
    "MetricContext",
    "MissingDependencyError",
    "ModelError",
    "ModelSpec",
    "Plan",
    "PluginError",
    "QAPair",
    "QuantizeResult",
    "Quantizer",
    "Reporter",
    "Response",
    "RunData",
    "RunDir",
    "RunDirError",
    "RunOutcome",
    "ScenarioError",
    "Scored",
    "Task",
    "TaskPrompt",
    "TokenStream",
    "TrialError",
    "TrialOutput",
    "TrialRecord",
    "TrialTimeout",
    "UsageError",
    "__version__",
    "hookimpl",
    "load_run",
]
