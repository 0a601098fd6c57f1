"""One device opened for a run, and the one way a trial runs on it.

A :class:`DeviceSession` owns everything that lives as long as the device is open: the
sampler, the loaded model and its prompts, the scoring process, the run-wide thermal state;
its methods own the attempt loop (reconnect and retry a lost device), the cooldown before a
trial and the throttling read from the trial's samples. It writes nothing: each
:meth:`DeviceSession.run_trial` returns the record and the samples, so the driver stays the
only writer of the run directory. The local executor and remote workers (a Ray actor per
phone) both use it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _noise as noise
from .. import _provenance as provenance
from .._api import (
    Device,
    Engine,
    GenerationRequest,
    GenerationResult,
    Scored,
    TaskPrompt,
    TokenStream,
)
from .._catalogue import catalogue_facts
from .._errors import DevicelabError, DeviceLostError, TrialError, UsageError
from .._executor import Reporter
from .._quality import Scorer
from .._record import Attempts, Measures, Quality, Thermal, TrialRecord
from .._registry import Registry
from .._rundir import now_iso
from .._telemetry import Sampler
from . import interrupt
from .materialise import materialise
from .measure import Sample, figures, measure
from .plan import Plan, ResolvedModel, Trial
from .prompts import PromptKey, build_prompts, completion_text
from .resolve import resolve_data
from .thermal import ThermalWatch


@dataclass
class TrialOutput:
    """One finished trial: its record, the telemetry samples taken for it (load, cooldown,
    attempts) and whether the device was lost for good while it ran."""

    record: TrialRecord
    samples: list[Sample]
    device_lost: bool = False
    # Provenance entries (digest -> entry) new since the last trial: the load this record
    # names in its ``provenance``. The driver adds them to run.json before the record.
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The token offsets (ms from the request) of the trial's last attempt: the driver
    # writes them to tokens.jsonl (devicelab._tokens).
    token_ms: list[float] = field(default_factory=list)


@dataclass
class _Attempt:
    """What one attempt at a trial gave: the error (``None``: ok), measures and thermal state,
    and the reason the device was lost (``None`` when it was not)."""

    error: str | None
    started_at: str
    finished_at: str
    measures: Measures
    output_text: str | None
    throttling: dict[str, Any]
    lost: str | None = None
    token_ms: list[float] = field(default_factory=list)


class DeviceSession:
    """One device opened for a run: its sampler, one loaded model at a time, and the one way
    a trial runs. A model loads when the first trial that needs it arrives and stays loaded
    while the trials that follow use it."""

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        reporter: Reporter | None = None,
        device_label: str | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.reporter = reporter or Reporter()
        self.device_label = device_label or plan.device_name
        self.device: Device | None = None
        self.info: dict[str, Any] = {}
        self.sampler: Sampler | None = None
        self.thermal = ThermalWatch()
        self._model: ResolvedModel | None = None
        self._engine: Engine | None = None
        self._load_error: str | None = None
        self._load_s: float | None = None
        self._prompts: dict[PromptKey, TaskPrompt] = {}
        # The loaded model's Engine.prompt_format ("" until one loaded).
        self._prompt_format = ""
        self._pending: list[Sample] = []
        self._provenance_key = ""
        self._provenance_new: dict[str, dict[str, Any]] = {}
        # Whether the device was checked for other load before its first trial; and, after
        # a wait for quiet that timed out, that noisy trials are flagged without waiting
        # again until one runs quiet.
        self._probed = False
        self._stays_busy = False
        # The [quality] metrics' own process, from open() to close().
        self.scorer: Scorer | None = None

    @classmethod
    def for_worker(
        cls,
        scenario: Mapping[str, Any],
        source: str,
        registry: Registry,
        run_id: str,
        device_label: str,
    ) -> DeviceSession:
        """A session on a remote worker, from the scenario as data
        (:meth:`~devicelab.Plan.scenario` ``.resolved()``): the worker resolves it against its
        own plugins and makes what it needs, so nothing but data crosses the network."""
        plan = materialise(resolve_data(scenario, source, registry), registry, Reporter())
        return cls(plan, run_id, device_label=device_label)

    # --- the device ----------------------------------------------------------------------

    def open(self) -> None:
        """Open the device and start its sampler; call :meth:`close` after, also on errors."""
        plan, sc = self.plan, self.plan.scenario
        if plan.metrics:
            # First: a metric that cannot load stops the run before any device or trial.
            self.reporter.status(f"starting the scoring process ({', '.join(plan.metrics)})")
            self.scorer = Scorer(plan.metrics, sc.source)
            self.scorer.start()
        self.device = device = plan.device_type.open(plan.device_name, plan.device_profile)
        self.reporter.status(f"opening device {plan.device_name}")
        device.open()
        self.info = device.info()
        collectors = device.collectors()
        for factory in plan.collector_factories.values():
            extra = factory(device)
            if extra is not None:
                collectors.append(extra)
        self.sampler = Sampler(collectors, sc.telemetry_interval_s)
        # Without telemetry the collectors still run, unpolled: each trial's first and last
        # samples give its other_cpu_pct, and the cooldown reads the temperature.
        self.sampler.start(poll=sc.telemetry_enabled)

    def close(self) -> None:
        """Free the model, stop the sampler, close and release the device."""
        try:
            self._close_engine()
        finally:
            scorer, self.scorer = self.scorer, None
            if scorer is not None:
                scorer.close()
            if self.sampler is not None:
                self.sampler.stop()
            device, self.device = self.device, None
            if device is not None:
                try:
                    device.close()
                finally:
                    self.plan.device_type.release(device)

    def take_samples(self) -> list[Sample]:
        """The samples taken since the last call (a failed load's included)."""
        out, self._pending = self._pending, []
        return out

    def take_provenance(self) -> dict[str, dict[str, Any]]:
        """The provenance entries made since the last call (one per model load)."""
        out, self._provenance_new = self._provenance_new, {}
        return out

    def _keep(self, samples: list[Sample]) -> None:
        if self.plan.scenario.telemetry_enabled:
            self._pending.extend(samples)

    # --- a trial -------------------------------------------------------------------------

    def run_trial(self, trial: Trial) -> TrialOutput:
        """Run ``trial`` (loading its model first if another one is loaded)."""
        assert self.device is not None and self.sampler is not None, "open() first"
        if self._model is not trial.model:
            self._load(trial.model)
            interrupt.check()  # llama.cpp's log callback drops a Ctrl-C during a load
        identity = dataclasses.replace(
            self.plan.identity(trial, self.run_id, self.device_label, self.info),
            provenance=self._provenance_key,
            prompt_format=self._prompt_format,
        )
        load_s, self._load_s = self._load_s, None
        if self._load_error is not None:
            at = now_iso()
            record = TrialRecord(
                identity,
                status="failed",
                error=self._load_error,
                started_at=at,
                finished_at=at,
                measures=Measures(load_s=load_s),
            )
            return TrialOutput(record, self.take_samples(), provenance=self.take_provenance())
        prompt = self._prompts[(trial.task, trial.doc_id, trial.item, trial.context_tokens)]
        if not self._probed:
            self._probed = True
            self._check_busy()
        cooldown_s, timed_out = self._cooldown(trial)
        last, tries = self._attempts(trial, prompt)
        record = TrialRecord(
            identity,
            status="ok" if last.error is None else "failed",
            error=last.error,
            output_text=last.output_text,
            started_at=last.started_at,
            finished_at=last.finished_at,
            measures=dataclasses.replace(last.measures, load_s=load_s),
            tries=tries,
            thermal=Thermal(cooldown_s, timed_out, **last.throttling),
        )
        if record.ok:
            record = self._score(record, trial, prompt)
        return TrialOutput(
            record,
            self.take_samples(),
            device_lost=last.lost is not None,
            provenance=self.take_provenance(),
            token_ms=last.token_ms,
        )

    def _attempts(self, trial: Trial, prompt: TaskPrompt) -> tuple[_Attempt, Attempts]:
        """Run ``trial``; when the device is lost, reconnect and retry (``[scenario]
        retries``); when it was noisy, wait for quiet and run it again (``[noise]``).

        Only the last attempt becomes the record, so a trial is written once however often it
        was tried; ``attempts`` says how many it took, ``error`` keeps the earlier reasons of
        a lost device and ``noisy_attempts`` the figures of the noisy attempts run again.
        """
        sc = self.plan.scenario
        assert self.device is not None
        lost: list[str] = []
        noisy: list[dict[str, Any]] = []
        n = 0
        while True:
            n += 1
            result = self._attempt(trial, prompt, n)
            interrupt.check()  # a Ctrl-C the attempt swallowed: it is not kept, nor retried
            if result.lost is not None:
                lost.append(f"attempt {n}: {result.lost}")
                if len(lost) > sc.retries:
                    break
                try:
                    self.device.reconnect(sc.reconnect_timeout_s)
                except DeviceLostError as exc:
                    lost.append(f"reconnect failed: {exc}")
                    break
                continue
            is_noisy = noise.is_noisy(result.measures.other_cpu_pct, sc.max_other_cpu_pct)
            if is_noisy is False:
                self._stays_busy = False
            if (
                is_noisy
                and result.error is None
                and sc.on_noisy == "retry"
                and len(noisy) < sc.noise_retries
                and self._wait_quiet(trial, result.measures.other_cpu_pct)
            ):
                noisy.append(figures(n, result.measures))
                continue
            break
        if lost and result.error is not None:
            final = [] if result.lost is not None else [f"attempt {n}: {result.error}"]
            result.error = "; ".join(lost + final)
        is_noisy = noise.is_noisy(result.measures.other_cpu_pct, sc.max_other_cpu_pct)
        if is_noisy and sc.on_noisy == "fail" and result.error is None:
            result.error = (
                f"noisy: other processes used {result.measures.other_cpu_pct:g}% of the "
                f"device's CPU during the trial (more than [noise] max_other_cpu_pct = "
                f"{sc.max_other_cpu_pct:g}). Stop what else runs on the device, or set "
                '[noise] on_noisy = "retry" or "flag".'
            )
        return result, Attempts(n, tuple(lost), is_noisy, tuple(noisy))

    def _probe(self, seconds: float) -> float | None:
        """``other_cpu_pct`` of the device over the next ``seconds``, outside any trial."""
        sampler = self.sampler
        assert sampler is not None
        before = sampler.read_now()
        time.sleep(seconds)
        return noise.between(before, sampler.read_now())

    def _check_busy(self) -> None:
        """Before the first trial: one status line naming what keeps a busy device busy."""
        other = self._probe(noise.PROBE_S)
        if other is None or other <= self.plan.scenario.max_other_cpu_pct:
            return
        assert self.device is not None
        try:
            top = self.device.cpu_consumers(noise.PROBE_S)
        except Exception:  # naming the consumers is a courtesy: it never stops a run
            top = []
        self.reporter.status(noise.top_line(self.plan.device_name, other, top))

    def _wait_quiet(self, trial: Trial, other: float | None) -> bool:
        """Wait, at most ``[noise] quiet_timeout_s``, until the device is quiet; whether it
        became quiet. After a wait that timed out, later noisy trials do not wait (the device
        stays busy) until one runs quiet."""
        sc = self.plan.scenario
        if self._stays_busy:
            return False
        self.reporter.status(
            f"{trial.trial_id} was noisy (other processes used {other:g}% of the CPU): "
            f"waiting up to {sc.quiet_timeout_s:g} s for the device to be quiet, then again"
        )
        deadline = time.perf_counter() + sc.quiet_timeout_s
        while True:
            now = self._probe(min(noise.PROBE_S, max(0.0, deadline - time.perf_counter())))
            if now is not None and now <= sc.max_other_cpu_pct:
                return True
            if time.perf_counter() >= deadline:
                self._stays_busy = True
                self.reporter.status(
                    f"the device stayed busy for {sc.quiet_timeout_s:g} s; noisy trials are "
                    "flagged without waiting until one runs quiet"
                )
                return False

    def _attempt(self, trial: Trial, prompt: TaskPrompt, attempt: int) -> _Attempt:
        sc, sampler, engine = self.plan.scenario, self.sampler, self._engine
        assert sampler is not None and engine is not None
        # A base model continues the task's completion prompt, which ends where a stop begins.
        completion = self._prompt_format == "completion"
        request = GenerationRequest(
            messages=prompt.messages,
            max_tokens=sc.max_output_tokens,
            temperature=sc.temperature,
            seed=sc.seed,
            fields=prompt.fields,
            raw_prompt=completion_text(prompt) if completion else None,
            stop=prompt.stop if completion else (),
        )
        stream = TokenStream(deadline=time.perf_counter() + sc.timeout_s)
        started_at = now_iso()
        sampler.begin(trial.trial_id, "idle", stream)
        result: GenerationResult | None = None
        error: str | None = None
        lost: str | None = None
        try:
            result = engine.generate(request, stream)
        except DeviceLostError as exc:
            error = lost = str(exc)
        except TrialError as exc:
            error = str(exc)
        except DevicelabError:
            raise
        except Exception as exc:  # an engine bug fails the trial, not the run
            error = describe(exc)
        finally:
            stream.done()
            samples = sampler.end()
        if attempt > 1:
            for sample in samples:
                sample["attempt"] = attempt
        self._keep(samples)
        measured = measure(samples, stream, result, allow_prefix_cache=sc.allow_prefix_cache)
        return _Attempt(
            # An engine's error stands; else what the measures show (no output, a cached prefix).
            error=error if error is not None else measured.error,
            started_at=started_at,
            finished_at=now_iso(),
            measures=measured.measures,
            output_text=measured.text,
            throttling=self.thermal.throttling(samples),
            lost=lost,
            token_ms=measured.token_ms,
        )

    def _cooldown(self, trial: Trial) -> tuple[float, bool]:
        """Wait, before a trial, until the hottest sensor is below ``[thermal]
        cooldown_below_c`` (at most ``cooldown_timeout_s``): (seconds waited, timed out).

        The wait's samples carry the trial's id and phase "cooldown"; a device without a
        temperature is not waited for."""
        sc, sampler = self.plan.scenario, self.sampler
        assert sampler is not None
        limit = sc.cooldown_below_c
        if limit is None or not self.plan.starts_segment(trial):
            return 0.0, False
        temp = sampler.read_now().get("temp_c")
        if temp is None:
            if not self.thermal.noted_no_temp:
                self.thermal.noted_no_temp = True
                self.reporter.status(
                    "no temperature on this device: trials start without a cooldown"
                )
            return 0.0, False
        if temp < limit:
            return 0.0, False
        self.reporter.status(
            f"cooling down: {temp:g} °C, waiting for < {limit:g} °C before {trial.trial_id}"
        )
        t0 = time.perf_counter()
        timed_out = False
        sampler.begin(trial.trial_id, "cooldown")
        try:
            while temp is not None and temp >= limit:
                if time.perf_counter() - t0 >= sc.cooldown_timeout_s:
                    timed_out = True
                    break
                time.sleep(sc.cooldown_poll_s)
                temp = sampler.read_now().get("temp_c")
        finally:
            samples = sampler.end()
        self.thermal.observe(samples)
        self._keep(samples)
        return round(time.perf_counter() - t0, 4), timed_out

    def _score(self, record: TrialRecord, trial: Trial, prompt: TaskPrompt) -> TrialRecord:
        """The task's own metrics, then the scenario's ``[quality]`` metrics, on an ok trial.

        A task metric that fails or gives something other than numbers fails the trial, with
        the task named; a ``[quality]`` metric that raises leaves the trial ok (its speed was
        measured) and is named with its reason in ``quality_errors``.
        """
        task = self.plan.tasks[trial.task]
        output = record.output_text or ""
        try:
            values = {str(k): float(v) for k, v in task.score(prompt, output).items()}
        except Exception as exc:
            return record.failed(
                f"the quality metric of task {task.kind!r} failed: {describe(exc)}. "
                "Task.score must return a dict of metric name -> number."
            )
        scorer = self.scorer
        if scorer is None:
            return record.but(quality=Quality(values))
        try:
            response = task.response(prompt, output)
        except Exception as exc:
            reason = f"task {task.kind!r} could not read the output: {describe(exc)}"
            return record.but(quality=Quality(values, {name: reason for name in scorer.metrics}))
        item = Scored(
            task=task.kind,
            candidates=tuple(response.items),
            references=tuple(prompt.references),
            source=prompt.fields.get("document", ""),
            request=prompt.fields.get("request", ""),
        )
        scoring = scorer.score(item)
        return record.but(quality=Quality({**values, **scoring.values}, dict(scoring.errors)))

    # --- the model -----------------------------------------------------------------------

    def _load(self, model: ResolvedModel) -> None:
        self._close_engine()
        sampler = self.sampler
        assert self.device is not None and sampler is not None
        self._model = model
        self._engine = engine = model.engine_cls(self.device, model.spec, model.options)
        name = self.plan.device_name
        self.reporter.status(f"loading {model.spec.name} ({model.spec.quant}) on {name}")
        sampler.begin(f"load/{name}/{model.spec.name}/{model.spec.quant}", "load")
        t0 = time.perf_counter()
        self._load_error = None
        self._prompt_format = ""
        try:
            engine.load()
            self._prompt_format = engine.prompt_format()
        except UsageError:
            raise
        except Exception as exc:
            self._load_error = f"model failed to load: {describe(exc)}"
        self._load_s = round(time.perf_counter() - t0, 4)
        self._keep(sampler.end())
        self._provenance(model, engine)
        self._prompts = build_prompts(self.plan, engine) if self._load_error is None else {}

    def _provenance(self, model: ResolvedModel, engine: Engine) -> None:
        """The load's provenance, once per load and outside every trial: the engine's build,
        the model file (its sha256 cached across runs), the device and this host."""
        build: dict[str, Any] = {}
        if self._load_error is None:
            try:
                build = {str(k): v for k, v in engine.build_info().items()}
            except Exception as exc:  # provenance never fails a trial
                build = {"error": describe(exc)}
        spec = model.spec
        entry: dict[str, Any] = {
            "device": self.device_label,
            "device_info": dict(self.info),
            "engine": {"name": spec.engine, "build": build},
            "model": {"name": spec.name, "quant": spec.quant},
            # As resolved (defaults filled in), so two loads that differ say how.
            "options": _json_safe(model.options),
            **provenance.session_info(),
        }
        if spec.path is not None:
            try:
                entry["model"].update(provenance.file_info(spec.path))
            except OSError as exc:
                entry["model"].update(path=str(spec.path), error=str(exc))
            else:
                entry["model"].update(catalogue_facts(spec.path))
        key = provenance.digest(entry)
        self._provenance_key = key
        self._provenance_new[key] = entry

    def _close_engine(self) -> None:
        engine, self._engine, self._model = self._engine, None, None
        if engine is not None:
            engine.close()


def _json_safe(options: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return {}
    return json.loads(json.dumps(dataclasses.asdict(options), default=str))  # type: ignore[no-any-return]


def describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"
