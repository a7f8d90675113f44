"""Precision -> how the TensorRT network is created and which builder flags are set.

TensorRT 10:
- fp32: weakly typed, TF32 cleared (TensorRT enables TF32 by default, which would
  round matmul/conv inputs to 10-bit mantissas: a silent downgrade) unless ``tf32=True``.
- fp16 / bf16: weakly typed with ``BuilderFlag.FP16`` / ``BuilderFlag.BF16``
  (layers may run in that precision, with fp32 fallback where TensorRT has no kernel).
- int8, int8-weight, int4-weight: only through explicit quantization, the model's own
  QuantizeLinear/DequantizeLinear nodes, in a **strongly typed** network with no
  precision flags (TensorRT's documented advice for Q/DQ graphs). The implicit INT8
  calibrators, deprecated since TensorRT 10.1, are never used.

TensorRT 11 removed weakly typed networks and the FP16/BF16 flags: every network is
strongly typed, so the types must be in the graph. For fp16 portarun converts the model
(float tensors to fp16, inputs and outputs kept fp32, ``convert.py``) and builds that
strongly typed; for bf16 there is no converter here, so it is refused rather than
silently built in fp32.

The mapping is data (``PrecisionPlan``) so it can be tested without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portarun.plugin import Precision, UnsupportedError

BACKEND = "tensorrt"


@dataclass(frozen=True)
class PrecisionPlan:
    precision: Precision
    strongly_typed: bool
    set_flags: tuple[str, ...] = ()  # trt.BuilderFlag member names to set
    clear_flags: tuple[str, ...] = ()  # ... and to clear
    convert_to: str | None = None  # convert the ONNX model's float tensors to this type before parsing

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision.value, "strongly_typed": self.strongly_typed,
                "set_flags": list(self.set_flags), "clear_flags": list(self.clear_flags),
                "convert_to": self.convert_to}


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def plan_precision(precision: Precision | str, trt_version: str, *, tf32: bool = False) -> PrecisionPlan:
    """The network typing and builder flags for ``precision`` on TensorRT ``trt_version``.

    Raises UnsupportedError when this TensorRT cannot honour the precision as asked.
    """
    precision = Precision.parse(precision)
    major = trt_major(trt_version)
    if major and major < 10:
        raise UnsupportedError(f"{BACKEND}: TensorRT {trt_version} is too old; portarun needs TensorRT 10 or newer",
                               backend=BACKEND, hint="pip install 'tensorrt>=10'")
    strongly_typed_only = major >= 11
    no_tf32 = () if tf32 else ("TF32",)
    if precision.is_quantized:
        return PrecisionPlan(precision, True, (), no_tf32)
    if precision is Precision.FP32:
        return PrecisionPlan(precision, strongly_typed_only, (), no_tf32)
    if strongly_typed_only and precision is Precision.FP16:
        return PrecisionPlan(precision, True, (), no_tf32, convert_to="fp16")
    if strongly_typed_only:
        raise UnsupportedError(
            f"{BACKEND}: TensorRT {trt_version} builds strongly typed networks only, so it cannot lower an fp32 "
            f"model to {precision} with a builder flag", backend=BACKEND,
            hint=f"convert the model's weights and activations to {precision} first (e.g. NVIDIA ModelOpt AutoCast) "
                 "and compile that model, use fp16, or use TensorRT 10")
    flag = {Precision.FP16: "FP16", Precision.BF16: "BF16"}[precision]
    return PrecisionPlan(precision, False, (flag,), no_tf32)


def network_flags(trt: Any, plan: PrecisionPlan) -> int:
    """The bit mask for ``builder.create_network``."""
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def apply_precision(trt: Any, config: Any, plan: PrecisionPlan) -> None:
    """Set and clear the plan's flags on a ``trt.IBuilderConfig``.

    A flag this TensorRT lacks is an error when it must be set (never built without it)
    and ignored when it only had to be cleared (then it cannot be on either).
    """
    for name in plan.clear_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is not None:
            config.clear_flag(flag)
    for name in plan.set_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise UnsupportedError(f"{BACKEND}: this TensorRT has no BuilderFlag.{name}, needed for {plan.precision}",
                                   backend=BACKEND, hint="upgrade TensorRT to 10.x")
        config.set_flag(flag)
