"""The exception tree and the exit codes it maps to (:func:`exit_code`), for ``devicelab``
and for any other command line a plugin ships (``python -m devicelab_android.hostcli``).

- :class:`UsageError` and its children mean the user must change something (a scenario,
  an option, an install): exit code 2, one paragraph, no traceback.
- :class:`TrialError` and its children mean one trial failed at run time: the trial is
  recorded as failed, the run goes on, and the run exits 1.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DevicelabError(Exception):
    """Base of every error devicelab raises on purpose."""


class UsageError(DevicelabError):
    """Bad input: the message says what is wrong and how to fix it."""


class ScenarioError(UsageError):
    """A scenario file that cannot be run as written."""


class PluginError(UsageError):
    """A plugin that cannot be loaded or registers something invalid."""


class MissingDependencyError(UsageError):
    """An optional dependency is not installed; the message names the install command."""


class CorpusError(UsageError):
    """A corpus file that is missing, malformed or too short for the scenario."""


class ModelError(UsageError):
    """A model that cannot be used: missing file, wrong format, too small a context."""


class RunDirError(UsageError):
    """An output directory that cannot take this run."""


class TrialError(DevicelabError):
    """One trial failed; the run records it and goes on."""


class EngineError(TrialError):
    """The engine failed while generating."""


class TrialTimeout(TrialError):
    """The trial ran past its time limit."""


class DeviceLostError(TrialError):
    """The device went away during a trial, or did something to it a retry survives (a device
    fault: the engine's process killed, an app killed, a UI server gone); the scheduler
    reconnects and retries within ``[scenario] retries``."""


def exit_code(exc: DevicelabError) -> int:
    """The exit code of a command line that stops on ``exc``: 2 for bad input (a
    :class:`UsageError`), else 1."""
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
