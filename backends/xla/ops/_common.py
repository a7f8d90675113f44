"""Helpers shared by the op families."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from onnx import helper

from ..jaxenv import is_tracer
from ..lower import Unsupported, is_const


def xp(*values: Any):
    """numpy when every value is known while tracing (keeps shape arithmetic static), else jax.numpy."""
    return np if all(v is None or is_const(v) for v in values) else jnp


def onnx_dtype(elem_type: int) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


class DynamicShape(Unsupported):
    """A shape depends on the data of a traced value: this graph cannot be one static XLA program."""


def concrete(value: Any, what: str) -> np.ndarray:
    """``value`` as numpy: known while tracing, or a concrete array when running eagerly."""
    if is_const(value):
        return np.asarray(value)
    if is_tracer(value):
        raise DynamicShape(f"{what} depends on the input data; XLA needs it known at compile time")
    return np.asarray(value)


def static_ints(value: Any, what: str) -> list[int]:
    """An input that must be known while tracing (a shape, axes, pads) as Python ints."""
    if value is None:
        return []
    return [int(v) for v in concrete(value, what).reshape(-1)]


def static_scalar(value: Any, what: str):
    return concrete(value, what).reshape(-1)[0].item()


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def float_compute(n, dtype) -> Any:
    """The dtype a float tensor of ``dtype`` computes in under the executable's precision."""
    compute = n.ctx.compute_dtype
    if compute is not None and np.dtype(dtype) == np.float32:
        return compute
    return dtype


def upcast(x):
    """Low-precision floats to float32 for accumulation; returns (array, original dtype)."""
    dtype = x.dtype
    if dtype in (jnp.bfloat16, jnp.float16):
        return x.astype(jnp.float32), dtype
    return x, dtype


def is_float(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.floating)


__all__ = ["DynamicShape", "Unsupported", "concrete", "float_compute", "is_const", "is_float", "jax", "jnp", "norm_axis", "np",
           "onnx_dtype", "static_ints", "static_scalar", "upcast", "xp"]
