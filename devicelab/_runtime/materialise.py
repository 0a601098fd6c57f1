"""Make what a resolved plan needs before its trials run: today, quantised model files.

Kept apart from :mod:`.resolve` because it can take minutes (a first quantisation) and
writes to the user's cache; its progress goes through the run's reporter.
"""

from __future__ import annotations

from dataclasses import replace

from .._executor import Reporter
from .._quantize import run_job
from .._registry import Registry
from .plan import Plan


def materialise(plan: Plan, registry: Registry, reporter: Reporter) -> Plan:
    """``plan`` with every quantisation it needs made (or found in the cache)."""
    if not any(m.make for m in plan.models):
        return plan
    models = []
    for model in plan.models:
        if model.make is not None:
            run_job(model.make, registry, reporter.status)
            model.engine_cls.check_model(model.spec)
            model = replace(model, make=None)
        models.append(model)
    return replace(plan, models=models)
