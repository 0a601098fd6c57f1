"""devicelab: a plugin-based device lab for benchmarking small language models on phones.

Plugins import what they need from here; the names below are the public API.
"""

from __future__ import annotations

from ._api import (
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
    Value,
    cache_dir,
    is_gguf,
)
from ._changes import CONFIRM_RUNS, MAX_PVALUE, WINDOW, ChangePoint, change_points
from ._engines import open_engine
from ._errors import (
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
    exit_code,
)
from ._executor import Executor, Reporter, RunOutcome
from ._hookspecs import hookimpl
from ._options import parse_options
from ._plugins import get_registry as load_plugins
from ._provenance import differences as provenance_differences
from ._provenance import sha256_file
from ._record import (
    CELL_KEY,
    FIELDS,
    RUN_KEY,
    Attempts,
    Field,
    Identity,
    Measures,
    Quality,
    Thermal,
    TrialRecord,
)
from ._registry import Registry
from ._report import Figure as ReportFigure
from ._rundir import RunData, RunDir, load_run
from ._runtime.plan import Plan, Trial
from ._runtime.schedule import Schedule
from ._runtime.session import DeviceSession, TrialOutput
from ._stops import StopCutter, find_stop, stop_at
from ._tokens import chunk_counts, recounted
from ._toml import TOMLDecodeError, read_toml

__version__ = "0.1.0"

__all__ = [
    "CELL_KEY",
    "CONFIRM_RUNS",
    "FIELDS",
    "MAX_PVALUE",
    "RUN_KEY",
    "WINDOW",
    "Attempts",
    "ChangePoint",
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
    "Field",
    "GenerationRequest",
    "GenerationResult",
    "Identity",
    "Measures",
    "Message",
    "Metric",
    "MetricContext",
    "MissingDependencyError",
    "ModelError",
    "ModelSpec",
    "Plan",
    "PluginError",
    "QAPair",
    "Quality",
    "QuantizeResult",
    "Quantizer",
    "Registry",
    "ReportFigure",
    "Reporter",
    "Response",
    "RunData",
    "RunDir",
    "RunDirError",
    "RunOutcome",
    "ScenarioError",
    "Schedule",
    "Scored",
    "StopCutter",
    "TOMLDecodeError",
    "Task",
    "TaskPrompt",
    "Thermal",
    "TokenStream",
    "Trial",
    "TrialError",
    "TrialOutput",
    "TrialRecord",
    "TrialTimeout",
    "UsageError",
    "Value",
    "__version__",
    "cache_dir",
    "change_points",
    "chunk_counts",
    "exit_code",
    "find_stop",
    "hookimpl",
    "is_gguf",
    "load_plugins",
    "load_run",
    "open_engine",
    "parse_options",
    "provenance_differences",
    "read_toml",
    "recounted",
    "sha256_file",
    "stop_at",
]
