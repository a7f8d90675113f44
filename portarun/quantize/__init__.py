"""Vendor-neutral quantization: one standard ONNX QDQ artifact that every backend consumes.

    import portarun
    q = portarun.quantize("model.onnx", "int4-weight", accuracy_floor="cosine=0.98")
    print(q.summary())
    q.save("model.q.onnx")

Precisions: ``int8`` (per-channel int8 weights, calibrated uint8 activations on the
inputs of MatMul/Gemm/Conv), ``int8-weight`` (weights only), ``int4-weight``
(opset-21 blocked INT4/UINT4 weights). An accuracy floor, measured on held-out
samples against the float model, drives a per-layer fallback toward float.
"""

from .._callable import make_module_callable
from .accuracy import Accuracy, AccuracyFloor
from .calibration import RandomCalibration
from .numerics import dequantize, pack_int4, quantize_blocked_int4, quantize_per_channel_int8, unpack_int4
from .quantizer import check_on_targets, quantize
from .report import NodeDecision, QuantizationReport, QuantizedModel

__all__ = ["Accuracy", "AccuracyFloor", "NodeDecision", "QuantizationReport", "QuantizedModel", "RandomCalibration",
           "check_on_targets", "dequantize", "pack_int4", "quantize", "quantize_blocked_int4", "quantize_per_channel_int8", "unpack_int4"]


# portarun.quantize(model, "int8") calls ``quantize``, while portarun.quantize.RandomCalibration and
# ``import portarun.quantize.numerics`` keep working
make_module_callable(__name__, quantize)
