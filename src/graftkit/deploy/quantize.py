"""int8 quantization of an exported ONNX model with ONNX Runtime's tools.

- Image models (CNNs): **static** quantization. Calibration runs the fp32 model on real inputs
  (the run's training images when their files exist, else its validation images) to fix each
  activation's int8 range ahead of time; weights are quantized per output channel; QDQ format
  (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels). Needs
  opset >= 13 for per-channel QDQ; graftkit exports 17. Only convolutions, their activations
  and pooling are quantized: residual `Add`s (and the padding arithmetic of TF-style "same"
  convolutions) and the new head stay fp32. On the demo run (EfficientNet-Lite0, Fashion-MNIST
  probe) quantizing everything kept top-1 agreement with fp32 at 0.89; this recipe at 0.975.
- Text models (transformers): **dynamic** quantization. Weights of MatMul/Gemm are int8; each
  activation's range is computed per batch at run time, which suits attention's input-dependent
  ranges and needs no calibration data.

Errors accumulate from the input onward: on EfficientNet-Lite0 the signal-to-noise ratio of the
fully quantized model falls from 46 dB at the input to 20 dB four convolutions later and to 10 dB
at the last one, so the early, full-resolution convolutions matter most. `search_static_int8`
therefore keeps a growing prefix of the convolutions in fp32 (0, 2, 4, 8, ... of them) until the
int8 logits move by at most `TARGET_NOISE` of the fp32 logits' spread (median |Δ| / std) on
held-out *training* images, and records each try. The search measures logit noise, not top-1
agreement, because the head was fitted on training images: their margins are wider than
validation's, so agreement there flatters (0.992 on training images where validation gave 0.960),
while the noise is about the same on both. On the Fashion-MNIST development run (1,000 validation
images, not the split that reports the figures in RESULTS.md), with 0, 4, 5, 6 and 8 of the 49
convolutions in fp32: noise 7.4 %, 6.1 %, 3.6 %, 2.5 %, 2.4 % of the spread and top-1 agreement
with fp32 0.948, 0.959, 0.976, 0.982, 0.980. Percentile and entropy calibration, more calibration
images, or leaving the pooling, the last convolution or the depthwise convolutions in fp32 each
moved agreement by less than a point.

Whether either is worth it on a given machine and model is measured by `graft export` (accuracy
on the validation split, latency against fp32) and recorded, never assumed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


STATIC_OP_TYPES = ("Conv", "Clip", "Relu", "GlobalAveragePool", "AveragePool", "MaxPool")
"""Operators statically quantized in image models (see the module docstring for why not Add/Gemm)."""


def quantize_static_int8(model: Path, out: Path, calibration: Iterable[dict[str, np.ndarray]], *, exclude: list[str] | None = None,
                         prepared: bool = False) -> dict[str, Any]:  # fmt: skip
    """Static int8 quantization (QDQ, per-channel weights, MinMax calibration) of `STATIC_OP_TYPES`.

    Args:
        model: The fp32 `.onnx` file.
        out: Where to write the int8 model.
        calibration: Batches of named float inputs, as the model takes them.
        exclude: Node names to keep in fp32 (names of the prepared model: `prepare_for_int8`).
        prepared: `model` is already `prepare_for_int8`'s output.

    Returns:
        The settings used, for the run's record.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self, batches: Iterable[dict[str, np.ndarray]]) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        source = model if prepared else prepare_for_int8(model, Path(tmp) / "prepared.onnx")
        quantize_static(
            str(source), str(out), _Reader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude or [],
            op_types_to_quantize=list(STATIC_OP_TYPES),
        )  # fmt: skip
    return {"method": "static", "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8 (MinMax calibration)",
            "op_types": list(STATIC_OP_TYPES), "excluded_nodes": exclude or []}  # fmt: skip


def prepare_for_int8(model: Path, out: Path) -> Path:
    """ONNX Runtime's pre-processing (shape inference and constant folding, as it advises) into `out`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(model), str(out), skip_symbolic_shape=True)
    return out


TARGET_NOISE = 0.03
"""The prefix search stops once int8 moves the logits by at most this share of their spread
(median |Δ logits| / std of the fp32 logits) on held-out training inputs; chosen on the
development run (see the module docstring)."""

MAX_FP32_SHARE = 1 / 3
"""The search keeps at most this share of the convolutions in fp32: beyond it int8 stops paying."""


def search_static_int8(
    model: Path,
    out: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    holdout: Sequence[dict[str, np.ndarray]],
    agreement: Callable[[np.ndarray, np.ndarray], float],
    *,
    target: float = TARGET_NOISE,
) -> dict[str, Any]:
    """Static int8 with the shortest prefix of convolutions kept in fp32 whose logit noise is within `target`.

    Args:
        model: The fp32 `.onnx` file.
        out: Where to write the chosen int8 model.
        calibration: Batches that fix the activation ranges (reused by every try).
        holdout: Other batches, on which each try is compared with fp32.
        agreement: `(fp32 outputs, int8 outputs) -> share in agreement`, the task's own measure
            (recorded with each try; the choice is made on the noise).
        target: Stop at the first try whose median |Δ logits| / std(fp32 logits) is at most this.

    Returns:
        The settings of the model written to `out`, with every try (`search`).
    """
    import onnx

    reference = _outputs(model, holdout)
    spread = float(reference.std()) or 1.0
    tries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_for_int8(model, Path(tmp) / "prepared.onnx")
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        prefixes = [0] + [k for k in (2, 4, 8, 16, 32, 64) if k <= len(convs) * MAX_FP32_SHARE]
        best: tuple[float, int, Path, dict[str, Any]] | None = None
        for k in prefixes:
            candidate = Path(tmp) / f"int8-{k}.onnx"
            settings = quantize_static_int8(prepared, candidate, calibration, exclude=convs[:k], prepared=True)
            got = _outputs(candidate, holdout)
            noise = float(np.median(np.abs(got - reference))) / spread
            tries.append({"fp32_convolutions": k, "logit_noise": round(noise, 4), "holdout_agreement": round(float(agreement(reference, got)), 4)})
            if best is None or noise < best[0]:
                best = (noise, k, candidate, settings)
            if noise <= target:
                break
        noise, kept, chosen, settings = best
        out.write_bytes(chosen.read_bytes())
    return {**settings, "fp32_prefix": f"the first {kept} of {len(convs)} convolutions stay fp32",
            "search": {"target_logit_noise": target, "logit_noise": "median |Δ logits| / std of the fp32 logits",
                       "on": "held-out training inputs", "tries": tries, "reached": noise <= target}}  # fmt: skip


def _outputs(model: Path, batches: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, b)[0] for b in batches])


def quantize_dynamic_int8(model: Path, out: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of MatMul/Gemm weights (transformers).

    Args:
        model: The fp32 `.onnx` file.
        out: Where to write the int8 model.

    Returns:
        The settings used, for the run's record.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_for_int8(model, Path(tmp) / "prepared.onnx")  # no symbolic inference: it trips on attention masks
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    return {"method": "dynamic", "weights": "int8 per-channel (MatMul, Gemm)", "activations": "uint8, range per batch at run time"}
