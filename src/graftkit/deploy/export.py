"""`graft export`: ONNX or TorchScript beside the run, checked against the PyTorch model.

```
RUN/export/model.onnx        dynamic batch axis (and sequence axis for text)
RUN/export/model.int8.onnx   with --quantize int8
RUN/export/model.pt          with --format torchscript
RUN/export/preprocess.json   inputs, preprocessing, label map, post-processing: enough for any client
RUN/export/parity.json       per exported file: inputs used, max |Δ logits|, agreement, latency, accuracy
RUN/export/tokenizer.json …  text runs: the tokenizer files
```
After every export a **parity check** runs the exported model and the PyTorch model on the same
inputs (the run's validation samples when their files still exist, else seeded synthetic ones; the
record says which) and compares the logits. The export fails with `ExportParityError`, and the
failing file is removed, when the share of inputs on which both agree (top-1 class, the label set
for multi-label, the value within a tolerance for regression) is below the threshold.

ONNX goes through PyTorch's TorchScript-based exporter by default: on EfficientNet-Lite0 it takes
1.4 s and writes one self-contained file, against 16 s and an external-data file for the dynamo
exporter (`exporter="dynamo"`, which PyTorch is moving to; both give logits equal to 1e-6).
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from graftkit.deploy.runtime import (
    EXPORT_DIR, INT8_FILE, ONNX_FILE, PARITY_FILE, PREPROCESS_FILE, TORCHSCRIPT_FILE, make_session, weights_digest,
)  # fmt: skip
from graftkit.deploy.modality import RunModality, model_batches, run_modality, signature_for, validation_samples
from graftkit.deploy.samples import Samples
from graftkit.deploy.signature import OUTPUT_NAME, Signature, example_inputs, join_outputs
from graftkit.errors import ConfigError, GraftError
from graftkit.rundir import RunSpec, read_json, read_run_json, replace_dir, sha256_file, write_json

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("torchscript", "dynamo")
OPSET = 17  # the TorchScript exporter's; per-channel QDQ quantization needs >= 13 (dynamo picks its own, 18)
MIN_AGREEMENT_FP32 = 0.99
"""An fp32 export must decide as PyTorch does on 99 % of the inputs (top-1 class, labels over the
threshold, values within the tolerance, per task)..."""
LOGIT_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}
"""...and its logits must match: max |Δ logits| ≤ tolerance × (1 + max |reference logit|), the
tolerance by the precision PyTorch ran in. Scaled or shifted logits keep every top class; they
fail here."""
INT8_MAX_LOSS = 0.01
"""int8 becomes the default backend (`--backend auto`) only when it loses at most this much of the
validation headline metric against fp32: one point of a 0-1 score (accuracy, F1, R²), or 1 % of an
error (MAE, WER). Otherwise the file stays for `--backend onnx-int8` and fp32 stays the default."""

INT8_NOISE = 0.3
"""int8's noise budget, as a share of the spread (std) of the model's own logits: the median
|Δ logits| of an int8 model must stay within it. Quantizing moves logits by a few percent of their
spread on trained models and by up to a quarter on tiny random ones; a scaled (×2) or class-shifted
output moves them by about one spread. The int8 agreement threshold is measured per model from the
noise actually seen (`int8_threshold`)."""


class ExportParityError(GraftError):
    """An exported model disagrees with the PyTorch model more than the threshold allows."""


@dataclass
class ExportResult:
    """What `export` wrote."""

    model: Path
    """The exported model (the int8 one when quantizing)."""
    preprocess: Path
    """`preprocess.json`."""
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per exported file key (`onnx`, `onnx-int8`, `torchscript`): its parity record."""

    def summary(self) -> str:
        """A few lines for the terminal: each file, its parity, and for int8 accuracy and speed."""
        lines = []
        for key, r in self.parity.items():
            lines.append(f"{self.model.parent / r['file']}: {r['agreement_on']} agreement with PyTorch {r['agreement']:.3f}, "
                         f"max |Δ logits| {r['max_abs_logit_diff']:.3g} on {r['inputs']}")  # fmt: skip
            val = r.get("validation") or {}
            if val.get("metric"):
                m = val["metric"]
                lines.append(f"  validation {m}: fp32 {val['onnx'][m]:.4f} → int8 {val['onnx-int8'][m]:.4f} (change {val['change']:+.4f}, n={val['n']})")
            elif val:
                lines.append(f"  validation accuracy not measured: {val['why']}")
            lat = r.get("latency_ms_single")
            if lat and key == "onnx-int8":
                lines.append("  latency, 1 input: " + ", ".join(f"{k} {v:.1f} ms" for k, v in lat.items()) + f" (int8 {r['speedup_vs_fp32']:.2f}x fp32)")
            if (r.get("quantization") or {}).get("fp32_prefix"):
                q = r["quantization"]
                lines.append(f"  int8 recipe: {q['fp32_prefix']} (fp32 convolutions → logit noise and agreement on {q['search']['on']}: "
                             + ", ".join(f"{t['fp32_convolutions']} → noise {t['logit_noise']:.3f}, agreement {t['holdout_agreement']:.3f}"
                                        for t in q["search"]["tries"]) + ")")  # fmt: skip
            if "adoption" in r:
                lines.append(f"  {r['adoption']}" + ("" if r["adopted"] else "; run it anyway with --backend onnx-int8" if r["passed"] else ""))
        lines.append(f"preprocessing and labels: {self.preprocess}")
        return "\n".join(lines)


def export(
    run_dir: str | Path,
    format: str = "onnx",
    *,
    quantize: str | None = None,
    min_agreement: float | None = None,
    max_samples: int = 256,
    batch_size: int = 32,
    exporter: str = "torchscript",
    precision: str = "fp32",
    channels_last: bool | None = None,
) -> ExportResult:
    """Export a run's model, check it against PyTorch, and record the check in the run.

    Args:
        run_dir: A finished run directory.
        format: `onnx` or `torchscript`.
        quantize: `int8` (ONNX only): also write `model.int8.onnx`: static quantization for image
            models, calibrated on the run's training images (validation images when those are
            gone), dynamic for text models.
        min_agreement: Parity threshold (share of inputs on which the exported model and PyTorch
            agree); default 0.99 for fp32; for int8, measured per model from its logits (`int8_threshold`).
        max_samples: At most this many validation samples for parity, calibration and accuracy.
        batch_size: Inputs per forward pass during the checks.
        exporter: `torchscript` (default) or `dynamo`: PyTorch's ONNX exporter to use.
        precision: Precision of the PyTorch reference the export is checked against: `fp32`
            (default: the exported graph's own), `auto` (what `graft predict` on this CPU uses) or `bf16`.
        channels_last: Memory format of the PyTorch reference (None: the run's request, else per model).

    Returns:
        An `ExportResult` with the paths and the parity records.

    Raises:
        ConfigError: Unknown format, quantization or exporter; a generative (seq2seq, causal-lm) run.
        RunDirError: `run_dir` is not a finished run.
        ExportParityError: The exported model disagrees with PyTorch (the file is removed; the
            numbers stay in `export/parity.json`).

    Example:
        >>> result = export("runs/flowers", "onnx", quantize="int8")
        >>> result.parity["onnx-int8"]["validation"]["change"]
        -0.0083
    """
    from graftkit.rundir import load_model
    from graftkit.engine import tune_malloc

    _check_options(format, quantize, exporter, min_agreement)
    tune_malloc()
    run_dir = Path(run_dir)
    model, meta, task = load_model(run_dir)  # raises RunDirError naming what is missing
    if meta.lora is not None:
        from graftkit.strategies import merge_lora

        model = merge_lora(model)  # adapters folded into the base weights: a plain graph
    sig = signature_for(model, meta, task)  # raises for tasks that are not one graph
    kind = run_modality(meta, run_dir)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        read_run_json(metrics_path)  # a damaged metrics.json is named before anything is written
    final_dir = run_dir / EXPORT_DIR
    out_dir = _staging_copy(final_dir)  # built beside export/, swapped in whole: never half an export
    try:
        records, path = _export_into(out_dir, run_dir, model, meta, task, sig, kind, format, quantize, min_agreement, max_samples,
                                     batch_size, exporter, precision, channels_last)  # fmt: skip
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    failed = {k: r for k, r in records.items() if not r["passed"]}
    for r in failed.values():
        (out_dir / r["file"]).unlink(missing_ok=True)
    replace_dir(out_dir, final_dir)
    _save_metrics_summary(run_dir, records)
    failed.pop("onnx-int8", None)  # a failed int8 model is removed and reported (`adoption`); fp32 stays the default
    if failed:
        lines = [f"{k}: {_why_failed(r)} on {r['inputs']}" for k, r in failed.items()]
        raise ExportParityError(
            "the exported model does not match the PyTorch model:\n  " + "\n  ".join(lines)
            + f"\nThe file was removed; the numbers are in {final_dir / PARITY_FILE}. Try `--exporter dynamo`, or lower "
            "--min-agreement if the gap is expected (int8)."
        )
    from graftkit.rundir.model_card import write_model_card

    write_model_card(run_dir, task.card())  # the card lists the exported files
    main_file = path.name if (final_dir / path.name).is_file() else ONNX_FILE  # a failed int8 model is gone
    return ExportResult(final_dir / main_file, final_dir / PREPROCESS_FILE, records)


def _staging_copy(final_dir: Path) -> Path:
    """A fresh `.export-new/` beside `final_dir`, holding a copy of the exports already there (an
    ONNX export keeps the TorchScript one, and the other way round)."""
    staging = final_dir.with_name(f".{final_dir.name}-new")
    shutil.rmtree(staging, ignore_errors=True)
    if final_dir.is_dir():
        shutil.copytree(final_dir, staging)
    else:
        staging.mkdir()
    return staging


def _export_into(out_dir: Path, run_dir: Path, model: Any, meta: RunSpec, task: Any, sig: Signature, kind: RunModality, format: str,
                 quantize: str | None, min_agreement: float | None, max_samples: int, batch_size: int, exporter: str,
                 precision: str, channels_last: bool | None) -> tuple[dict[str, dict[str, Any]], Path]:  # fmt: skip
    """Write the export into `out_dir` and check it; return the parity records and the main file."""
    from graftkit.engine import run_inference_settings

    tokenizer = kind.model_tokenizer(model)

    samples = validation_samples(run_dir, meta, limit=max_samples)
    batches = list(model_batches(samples.items, meta, batch_size, tokenizer))
    # The PyTorch side of every comparison, decided by the one inference rule (on the CPU, where the export runs).
    engine = run_inference_settings(meta, device="cpu", precision=precision, channels_last=channels_last).engine()
    reference = _torch_logits(sig, batches, engine)
    checker = _Checker(task, meta, samples, batches, reference, getattr(engine, "precision", "fp32"))
    records: dict[str, dict[str, Any]] = {}

    if format == "torchscript":
        path = out_dir / TORCHSCRIPT_FILE
        _export_torchscript(sig, example_inputs(batches[0], sig), path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            ts = torch.jit.load(str(path))
        run = lambda b: ts(*example_inputs(b, sig))  # noqa: E731
        records["torchscript"] = checker.record(path, run, "fp32", min_agreement, {"exporter": "torch.jit.trace"})
        exporter, opset = "torch.jit.trace", None
    else:
        path = out_dir / ONNX_FILE
        _export_onnx(sig, example_inputs(batches[0], sig), path, exporter)
        opset = _onnx_opset(path)
        session = make_session(path)
        records["onnx"] = checker.record(path, _session_runner(session), "fp32", min_agreement, {"exporter": exporter, "opset": opset})
        if quantize == "int8":
            path = out_dir / INT8_FILE
            agreement = lambda ref, got: task.export_agreement(ref, got, "int8")[0]  # noqa: E731
            settings, calibrated_on = kind.quantize_int8(out_dir / ONNX_FILE, path, samples, batches, sig, batch_size, agreement)
            int8 = make_session(path)
            extra = {"quantization": settings, "calibration": calibrated_on}
            records["onnx-int8"] = checker.record(path, _session_runner(int8), "int8", min_agreement, extra)
            _compare_speed_and_accuracy(records, checker, sig, engine, {"onnx": _session_runner(session), "onnx-int8": _session_runner(int8)})
            _decide_int8(records["onnx-int8"], task)

    _write_preprocess(run_dir, out_dir, meta, kind, sig, format, exporter, opset, tokenizer, int8=records.get("onnx-int8"))  # once every file exists
    _save_records(out_dir, records)
    return records, path


def _check_options(format: str, quantize: str | None, exporter: str, min_agreement: float | None) -> None:
    problems = []
    if format not in FORMATS:
        problems.append(f"--format {format!r} is not supported; choose one of: {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        problems.append(f"--quantize {quantize!r} is not supported; the only choice is int8")
    elif quantize and format != "onnx":
        problems.append("--quantize int8 needs --format onnx (quantized models run under ONNX Runtime)")
    if exporter not in EXPORTERS:
        problems.append(f"--exporter {exporter!r} is not known; choose one of: {', '.join(EXPORTERS)}")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        problems.append(f"--min-agreement must be between 0 and 1, got {min_agreement}")
    if problems:
        raise ConfigError("; ".join(problems))


# ----------------------------------------------------------------------------------------------
# Exporters


def _export_onnx(sig: Signature, example: tuple[torch.Tensor, ...], path: Path, exporter: str) -> None:
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer warnings
        if exporter == "torchscript":
            torch.onnx.export(
                sig.module, example, str(path), input_names=sig.input_names, output_names=sig.output_names,
                dynamic_axes=sig.dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )  # fmt: skip
        else:
            torch.onnx.export(
                sig.module, example, str(path), input_names=sig.input_names, output_names=sig.output_names,
                dynamic_axes=sig.dynamic_axes, dynamo=True, external_data=False, verbose=False,
            )  # fmt: skip


def _export_torchscript(sig: Signature, example: tuple[torch.Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches
        traced = torch.jit.trace(sig.module, example, check_trace=False, strict=False)
        traced.save(str(path))


# ----------------------------------------------------------------------------------------------
# Parity, accuracy, speed


def _torch_logits(sig: Signature, batches: list[dict[str, torch.Tensor]], engine: Any) -> torch.Tensor:
    module = engine.setup(sig.module)
    try:
        with torch.inference_mode(), engine.autocast():
            return torch.cat([join_outputs(module(*engine.to_device(example_inputs(b, sig)))).float().cpu() for b in batches])
    finally:
        sig.module.to(memory_format=torch.contiguous_format)  # the graph is exported from the plain layout


def _session_runner(session: Any) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    names = [i.name for i in session.get_inputs()]

    def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = session.run([o.name for o in session.get_outputs()], {n: batch[n].numpy() for n in names})
        return torch.from_numpy(join_outputs(outputs))  # multitask: one output per task, side by side

    return run


class _Checker:
    """Compares an exported model's logits with PyTorch's on the same batches."""

    def __init__(self, task: Any, meta: RunSpec, samples: Samples, batches: list, reference: torch.Tensor, reference_precision: str) -> None:
        self.task, self.meta, self.samples, self.batches, self.reference = task, meta, samples, batches, reference
        self.reference_precision = reference_precision if reference_precision in LOGIT_TOLERANCE else "fp32"
        self.outputs: dict[str, torch.Tensor] = {}
        if len(reference) == 0:
            raise ExportParityError(
                f"there are no inputs to check the export on ({samples.source}): parity on nothing proves nothing. "
                "Give the run's data back (graft.json `data.path`) or let export make synthetic inputs."
            )

    def logits(self, run: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([run(b).float() for b in self.batches])

    def record(self, path: Path, run: Callable, precision: str, min_agreement: float | None, extra: dict[str, Any]) -> dict[str, Any]:
        out = self.logits(run)
        self.outputs[path.name] = out
        ref = self.reference
        if out.shape != ref.shape:
            raise ExportParityError(f"{path.name} returns logits of shape {tuple(out.shape)}, PyTorch {tuple(ref.shape)}")
        agreement, on = self.task.export_agreement(ref, out, precision)
        diff = (out - ref).abs()
        if precision == "int8":
            budget = INT8_NOISE * float(ref.std()) if ref.numel() > 1 else INT8_NOISE
            measured = int8_threshold(self.task, ref, float(diff.median()), budget, float(diff.pow(2).mean().sqrt()))
            threshold = measured if min_agreement is None else min_agreement
            logits = {"median_abs_logit_diff": float(diff.median()), "noise_budget": budget, "measured_min_agreement": measured,
                      "logits_within_tolerance": float(diff.median()) <= budget}  # fmt: skip
        else:
            tolerance = LOGIT_TOLERANCE[self.reference_precision] * (1 + float(ref.abs().max()))
            threshold = MIN_AGREEMENT_FP32 if min_agreement is None else min_agreement
            logits = {"logit_tolerance": tolerance, "logits_within_tolerance": float(diff.max()) <= tolerance}
        rec = {
            "file": path.name,
            "precision": precision,
            "inputs": self.samples.source,
            "real_inputs": self.samples.real,
            "n": len(out),
            "max_abs_logit_diff": float(diff.max()),
            **logits,
            "agreement": agreement,
            "agreement_on": on,
            "min_agreement": threshold,
            "passed": agreement >= threshold and logits["logits_within_tolerance"],
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }
        if on == "top-1 class":
            rec["top1_agreement"] = agreement
        return rec


def int8_threshold(task: Any, reference: torch.Tensor, median_diff: float, budget: float, rms_diff: float | None = None) -> float:
    """The agreement an int8 model of *this* model should reach: what the task's own agreement
    gives between the reference logits and the same logits moved by random noise as large as the
    int8 model's, less three standard errors of that share on this many inputs. The noise's scale
    is the larger of what its median |Δ logits| and its root mean square imply (int8 errors have
    heavier tails than a Gaussian of the same median: on EfficientNet-Lite0 the median alone set a
    threshold that real int8 noise missed by a point), capped at the budget. A model with wide
    margins must agree almost everywhere; one whose classes sit close together may flip more —
    and an error that is not noise (shuffled classes) agrees far less than noise of its size would."""
    sigma = min(max(median_diff / 0.6745, rms_diff or 0.0), budget / 0.6745)  # the median of |N(0, σ)| is 0.6745 σ
    generator = torch.Generator().manual_seed(0)
    noisy = reference + sigma * torch.randn(reference.shape, generator=generator)
    simulated, _ = task.export_agreement(reference, noisy, "int8")
    n = max(len(reference), 1)
    standard_error = math.sqrt(max(simulated * (1 - simulated), 1 / n) / n)
    return round(max(0.0, simulated - 3 * standard_error), 4)


def _why_failed(r: dict[str, Any]) -> str:
    reasons = []
    if r["agreement"] < r["min_agreement"]:
        reasons.append(f"{r['agreement_on']} agreement {r['agreement']:.3f} < {r['min_agreement']}")
    if not r["logits_within_tolerance"]:
        if "logit_tolerance" in r:
            reasons.append(f"max |Δ logits| {r['max_abs_logit_diff']:.3g} > tolerance {r['logit_tolerance']:.3g}")
        else:
            reasons.append(f"median |Δ logits| {r['median_abs_logit_diff']:.3g} > int8 noise budget {r['noise_budget']:.3g}")
    return "; ".join(reasons) + f" (max |Δ logits| {r['max_abs_logit_diff']:.3g})"


def _compare_speed_and_accuracy(records: dict, checker: _Checker, sig: Signature, engine: Any, runners: dict) -> None:
    """Validation metric of PyTorch, fp32 and int8, and single-input latency of each: measured here
    (PyTorch with the reference's `engine`)."""

    rec = records["onnx-int8"]
    if checker.samples.real:
        targets = checker.task.encode(checker.samples.labels).numpy()
        scores = {}
        for name, logits in (("torch", checker.reference), ("onnx", checker.outputs[ONNX_FILE]), ("onnx-int8", checker.outputs[INT8_FILE])):
            m = checker.task.epoch_metrics(checker.task.activate(logits).numpy(), targets)
            key = next(k for k in checker.task.headline if k in m)
            scores[name] = {key: round(float(m[key]), 6)}
        key = next(iter(scores["onnx"]))
        rec["validation"] = {**scores, "metric": key, "change": round(scores["onnx-int8"][key] - scores["onnx"][key], 6), "n": len(targets)}
    else:
        rec["validation"] = {"measured": False, "why": f"no labelled validation samples here ({checker.samples.source})"}
    single = {k: v[:1] for k, v in checker.batches[0].items()}
    torch_model = engine.setup(sig.module)

    def torch_run(b: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode(), engine.autocast():
            return torch_model(*engine.to_device(example_inputs(b, sig)))

    latency = {"torch": _latency_ms(torch_run, single)}
    latency.update({name: _latency_ms(run, single) for name, run in runners.items()})
    rec["latency_ms_single"] = latency
    rec["speedup_vs_fp32"] = round(latency["onnx"] / latency["onnx-int8"], 3)
    rec["speedup_vs_torch"] = round(latency["torch"] / latency["onnx-int8"], 3)
    records["onnx"]["latency_ms_single"] = {"torch": latency["torch"], "onnx": latency["onnx"]}


def _decide_int8(rec: dict[str, Any], task: Any) -> None:
    """Whether the int8 model becomes the default backend: its parity passed and it lost at most
    `INT8_MAX_LOSS` of the validation headline metric. Sets `adopted` and `adoption` (why)."""
    val = rec.get("validation") or {}
    if not rec["passed"]:
        rec["adopted"], why = False, f"int8 failed its parity check ({_why_failed(rec)}) and was removed"
    elif not val.get("metric"):
        rec["adopted"], why = False, f"its accuracy could not be measured ({val.get('why', 'no validation labels')})"
    else:
        metric = task.metrics.get(val["metric"])
        higher = metric.higher_is_better if metric is not None else True
        fp32, int8 = val["onnx"][val["metric"]], val["onnx-int8"][val["metric"]]
        loss = (fp32 - int8) if higher else (int8 - fp32)
        budget = INT8_MAX_LOSS if higher and 0.0 <= fp32 <= 1.0 else INT8_MAX_LOSS * abs(fp32)
        rec["adopted"] = loss <= budget
        why = (f"validation {val['metric']} {fp32:.4f} → {int8:.4f} (n={val['n']}): "
               + (f"within the budget of {budget:.4g}" if rec["adopted"] else f"loses {loss:.4g}, more than the budget of {budget:.4g}"))  # fmt: skip
    rec["adoption"] = ("default backend: onnx-int8, " if rec["adopted"] else "default backend stays onnx (fp32): ") + why


def _latency_ms(run: Callable[[dict[str, torch.Tensor]], Any], batch: dict[str, torch.Tensor], repeats: int = 20) -> float:
    """Median wall time of one forward pass on `batch`, after 3 warm-up passes, in ms."""
    for _ in range(3):
        run(batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 3)


# ----------------------------------------------------------------------------------------------
# Files


def _onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _temperature(meta: RunSpec, post: dict[str, Any]) -> dict[str, Any]:
    """The temperature fitted on validation, for clients of a softmax output (what `graftkit.load`
    divides the logits by)."""
    temperature = (meta.calibration or {}).get("temperature")
    if not temperature or post.get("activation") != "softmax":
        return {}
    return {"temperature": float(temperature), "calibration": "probabilities = softmax(logits / temperature)"}


def _write_preprocess(run_dir: Path, out_dir: Path, meta: RunSpec, kind: RunModality, sig: Signature, format: str, exporter: str,
                      opset: int | None, tokenizer: Any, int8: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """`preprocess.json`: everything a client in any language needs to feed the model and read it."""
    task = meta.task
    post = sig.output_spec  # the task's: activation, thresholds, scaling
    spec: dict[str, Any] = {
        "schema_version": 1,
        "modality": meta.modality,
        "task": task["name"],
        "classes": task.get("classes", []),
        "inputs": sig.input_spec,
        "output": {"name": OUTPUT_NAME, "shape": ["batch", max(len(task.get("classes", [])), 1)], "dtype": "float32", **post,
                   **_temperature(meta, post), **({"names": sig.output_names} if sig.output_names != [OUTPUT_NAME] else {})},
        "model": {"id": meta.model.model_id, "arch": meta.model.arch},
        "weights_sha256": weights_digest(run_dir),
        "files": {},
    }
    path = out_dir / PREPROCESS_FILE
    if path.is_file():  # keep the entries of other exports made from the same weights
        old = read_json(path)
        if old.get("weights_sha256") == spec["weights_sha256"]:
            spec["files"] = old.get("files", {})
            spec.update({k: old[k] for k in ("default_backend", "default_backend_why") if k in old})
    name = TORCHSCRIPT_FILE if format == "torchscript" else ONNX_FILE
    spec["files"][name] = {"format": format, "exporter": exporter, "opset": opset}
    if int8 is not None:
        spec["files"][INT8_FILE] = {"format": "onnx", "quantized_from": ONNX_FILE, "quantization": f"int8 {kind.int8_method}", "opset": opset}
        spec["default_backend"] = "onnx-int8" if int8["adopted"] else "onnx"
        spec["default_backend_why"] = int8["adoption"]
    elif format == "onnx" and "default_backend" not in spec:
        spec["default_backend"], spec["default_backend_why"] = "onnx", "the fp32 ONNX export (no int8 model)"
    for file_name, entry in spec["files"].items():  # a truncated or replaced file is refused by name when loaded
        if (out_dir / file_name).is_file():
            entry["sha256"] = sha256_file(out_dir / file_name)
    spec.update(kind.preprocess_section(out_dir, tokenizer))  # `image` or `text`; saves a text run's tokenizer
    write_json(path, spec)
    return path


def _save_records(out_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """Merge the records into export/parity.json."""
    path = out_dir / PARITY_FILE
    existing = read_json(path) if path.is_file() else {}
    existing.update(records)
    write_json(path, existing)


def _save_metrics_summary(run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """Merge a summary of the records into metrics.json's `export` key."""
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = read_run_json(metrics_path)
        summary = metrics.get("export") or {}
        for key, r in records.items():
            summary[key] = {k: r[k] for k in ("file", "passed", "agreement", "agreement_on", "max_abs_logit_diff", "inputs", "n",
                                              "validation", "latency_ms_single", "speedup_vs_fp32") if k in r}  # fmt: skip
        metrics["export"] = summary
        write_json(metrics_path, metrics)
