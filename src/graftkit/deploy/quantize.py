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

Whether either is worth it on a given machine and model is measured by `graft export` (accuracy
on the validation split, latency against fp32) and recorded, never assumed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np


STATIC_OP_TYPES = ("Conv", "Clip", "Relu", "GlobalAveragePool", "AveragePool", "MaxPool")
"""Operators statically quantized in image models (see the module docstring for why not Add/Gemm)."""


def quantize_static_int8(model: Path, out: Path, calibration: Iterable[dict[str, np.ndarray]], *, exclude: list[str] | None = None) -> dict[str, Any]:
    """Static int8 quantization (QDQ, per-channel weights, MinMax calibration) of `STATIC_OP_TYPES`.

    Args:
        model: The fp32 `.onnx` file.
        out: Where to write the int8 model.
        calibration: Batches of named float inputs, as the model takes them.
        exclude: Node names to keep in fp32.

    Returns:
        The settings used, for the run's record.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self, batches: Iterable[dict[str, np.ndarray]]) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)  # shape inference + folding, as ORT advises
        quantize_static(
            str(prepared), str(out), _Reader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude or [],
            op_types_to_quantize=list(STATIC_OP_TYPES),
        )  # fmt: skip
    return {"method": "static", "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8 (MinMax calibration)",
            "op_types": list(STATIC_OP_TYPES), "excluded_nodes": exclude or []}  # fmt: skip


def quantize_dynamic_int8(model: Path, out: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of MatMul/Gemm weights (transformers).

    Args:
        model: The fp32 `.onnx` file.
        out: Where to write the int8 model.

    Returns:
        The settings used, for the run's record.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)  # symbolic inference trips on attention masks
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    return {"method": "dynamic", "weights": "int8 per-channel (MatMul, Gemm)", "activations": "uint8, range per batch at run time"}
