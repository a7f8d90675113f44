"""fp32 -> fp16 ONNX conversion, for TensorRT 11's strongly typed networks.

TensorRT 11 has no FP16 builder flag: the graph itself must be fp16. We reuse the
converter ONNX Runtime ships (``onnxruntime.transformers.float16``) or, without ONNX
Runtime, the same function from ``onnxconverter-common``. Inputs and outputs stay
fp32 (``keep_io_types``), so the compiled model's signature does not change.
"""

from __future__ import annotations

from portarun.errors import UnsupportedError
from portarun.model import Model

BACKEND = "tensorrt"


def _converter():
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxconverter_common.float16 import convert_float_to_float16
        except ImportError:
            raise UnsupportedError(
                f"{BACKEND}: TensorRT 11 needs the model converted to fp16, and no converter is installed",
                backend=BACKEND, hint="pip install onnxruntime (or onnxconverter-common)") from None
    return convert_float_to_float16


def to_fp16(model: Model) -> Model:
    """The model with float tensors in fp16 and fp32 inputs/outputs."""
    converted = _converter()(model.proto, keep_io_types=True, disable_shape_infer=False)
    return Model.from_proto(converted, name=model.name, check=False)
