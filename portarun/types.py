"""The small value types every part of portarun speaks: targets, precisions, tensor specs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # numpy loads on first use: `portarun --help` needs only the precision names
    import numpy as np

from .errors import InputError, InvalidPrecisionError, InvalidTargetError

Dim = Union[int, str, None]  # fixed size, symbolic name, or unknown


class Precision(str, Enum):
    """What the compiled model computes in.

    ``int8`` quantizes weights and activations (static, calibrated);
    ``int8-weight`` and ``int4-weight`` quantize weights only, activations stay float.
    """

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT8_WEIGHT = "int8-weight"
    INT4_WEIGHT = "int4-weight"

    def __str__(self) -> str:
        return self.value

    @property
    def is_quantized(self) -> bool:
        return self in (Precision.INT8, Precision.INT8_WEIGHT, Precision.INT4_WEIGHT)

    @property
    def is_weight_only(self) -> bool:
        """int8-weight / int4-weight: quantized weights next to float activations."""
        return self in (Precision.INT8_WEIGHT, Precision.INT4_WEIGHT)

    @property
    def is_float(self) -> bool:
        return not self.is_quantized

    @classmethod
    def parse(cls, value: "Precision | str") -> "Precision":
        if isinstance(value, Precision):
            return value
        text = str(value).strip().lower().replace("_", "-")
        aliases = {"float32": "fp32", "f32": "fp32", "float16": "fp16", "f16": "fp16",
                   "half": "fp16", "bfloat16": "bf16", "int8-static": "int8",
                   "w8": "int8-weight", "w4": "int4-weight", "int4": "int4-weight"}
        text = aliases.get(text, text)
        for member in cls:
            if member.value == text:
                return member
        names = [m.value for m in cls]
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(names)}"
        raise InvalidPrecisionError(f"unknown precision '{value}'", hint=hint)


_TARGET_RE = re.compile(r"^(?P<backend>[a-z][a-z0-9_\-]*)(?::(?P<device>[a-z][a-z0-9_\-]*))?(?::(?P<index>\d+))?$")


@dataclass(frozen=True)
class Target:
    """Where to run: ``backend[:device[:index]]``, e.g. ``onnxruntime:cuda:1``.

    ``device`` None means the backend's default device.
    """

    backend: str
    device: str | None = None
    index: int | None = None

    @classmethod
    def parse(cls, value: "Target | str") -> "Target":
        if isinstance(value, Target):
            return value
        text = str(value).strip().lower()
        match = _TARGET_RE.match(text)
        if not match:
            raise InvalidTargetError(
                f"cannot parse target '{value}'",
                hint="write backend[:device[:index]], e.g. onnxruntime:cpu or xla:gpu:0",
            )
        index = match.group("index")
        return cls(match.group("backend"), match.group("device"), int(index) if index is not None else None)

    def __str__(self) -> str:
        text = self.backend
        if self.device is not None:
            text += f":{self.device}"
            if self.index is not None:
                text += f":{self.index}"
        return text


def np_dtype(value: Any) -> np.dtype:
    """numpy dtype from a name, numpy dtype or ONNX element type; bfloat16 etc. via ml_dtypes."""
    import numpy as np

    if isinstance(value, np.dtype):
        return value
    if isinstance(value, int):
        from onnx import helper

        return np.dtype(helper.tensor_dtype_to_np_dtype(value))
    try:
        return np.dtype(value)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, str(value)))


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor's dtype and shape; dims are ints, symbolic names, or None (unknown)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None  # None: rank unknown

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np_dtype(self.dtype))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def is_dynamic(self) -> bool:
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype.name,
                "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict) -> "TensorSpec":
        shape = data.get("shape")
        return cls(data["name"], data["dtype"], None if shape is None else tuple(shape))

    def check(self, array: np.ndarray, bound: dict[str, tuple[int, str]] | None = None) -> None:
        """Raise InputError when ``array`` cannot be fed as this tensor.

        ``bound`` collects sizes of symbolic dims across inputs, so two inputs that
        share a dim name (``batch``) must agree on it.
        """
        if array.dtype != self.dtype:
            raise InputError(
                f"input '{self.name}': expected dtype {self.dtype.name}, got {_dtype_text(array.dtype)}",
                hint=f"cast it, e.g. array.astype(numpy.{self.dtype.name})",
            )
        if self.shape is None:
            return
        if array.ndim != len(self.shape):
            raise InputError(
                f"input '{self.name}': expected rank {len(self.shape)} {self.shape_text()}, "
                f"got rank {array.ndim} {list(array.shape)}"
            )
        for axis, (want, got) in enumerate(zip(self.shape, array.shape)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(
                        f"input '{self.name}': dim {axis} must be {want}, got {got} "
                        f"(expected {self.shape_text()}, got {list(array.shape)})"
                    )
            elif isinstance(want, str) and bound is not None:
                seen = bound.setdefault(want, (got, self.name))
                if seen[0] != got:
                    raise InputError(
                        f"input '{self.name}': dim {axis} '{want}' is {got}, but input "
                        f"'{seen[1]}' gave '{want}' = {seen[0]}"
                    )


def _dtype_text(dtype: np.dtype) -> str:
    """A dtype's name, with its byte order when that is not the machine's ('>f4 big-endian')."""
    if dtype.isnative:
        return dtype.name
    return f"{dtype.str} {'big' if dtype.byteorder == '>' else 'little'}-endian"


@dataclass(frozen=True)
class Device:
    """One device a backend can run on here."""

    backend: str
    kind: str  # "cpu", "cuda", "gpu", "tpu", "npu", "rocm", ...
    index: int | None = None
    description: str = ""

    @property
    def target(self) -> Target:
        return Target(self.backend, self.kind, self.index)

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}" if self.index is not None else self.kind


@dataclass(frozen=True)
class Support:
    """Answer to ``Backend.supports``: truthy when the work can be compiled, else says why."""

    ok: bool
    reason: str = ""
    missing_ops: tuple[str, ...] = field(default_factory=tuple)  # op types with no implementation
    hint: str = ""  # how to get past a "no" (shown as the UnsupportedError's hint)
    # What the backend worked out while answering yes, handed to its _compile within the same
    # compile call (XLA: the lowered graph), so the work is done once. Not part of the answer.
    prepared: Any = field(default=None, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def yes(cls, prepared: Any = None) -> "Support":
        return cls(True, prepared=prepared)

    @classmethod
    def no(cls, reason: str, missing_ops: tuple[str, ...] = (), hint: str = "") -> "Support":
        return cls(False, reason, tuple(missing_ops), hint)
