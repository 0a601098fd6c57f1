"""Provenance: what made a run's numbers, written to ``run.json`` (key ``provenance``).

Two levels, each computed once:

- the run's, by the driver when the run directory is made: devicelab (version, and the git
  commit and dirty flag when it runs from a checkout), every plugin's distribution and
  version, the host (CPU model, cores, frequency governor, kernel, Python) and the scenario
  file's sha256;
- a load's, by the :class:`~devicelab.DeviceSession` that loaded a model, on whatever host ran
  it (a Ray worker's included): the device and its fingerprint (a phone's build), the engine's
  build (:meth:`Engine.build_info`) and the model file (path, size, sha256). It also holds
  the session's own host, devicelab and plugins; run.json keeps those only where they differ
  from the run's (a worker elsewhere).

A trial record's ``provenance`` is the digest of its load's entry, the key of
``run.json["provenance"]["loads"]``: equal builds share one entry, and records made before
and after a change (another phone, a resumed run with a newer engine) stay apart.

Collecting (:mod:`.collect`) reads files, git and the host; comparing (:mod:`.diff`) is pure.
The run pipeline collects the run's provenance and hands it to the run directory.
"""

from __future__ import annotations

from .collect import (
    HASH_CACHE,
    devicelab_info,
    file_info,
    git_info,
    host_info,
    plugin_info,
    run_provenance,
    scenario_info,
    session_info,
    sha256_file,
)
from .diff import (
    SESSION_KEYS,
    compact_load,
    comparable,
    differences,
    digest,
    flatten,
    load_entry,
    report,
)

__all__ = [
    "HASH_CACHE",
    "SESSION_KEYS",
    "compact_load",
    "comparable",
    "devicelab_info",
    "differences",
    "digest",
    "file_info",
    "flatten",
    "git_info",
    "host_info",
    "load_entry",
    "plugin_info",
    "report",
    "run_provenance",
    "scenario_info",
    "session_info",
    "sha256_file",
]
