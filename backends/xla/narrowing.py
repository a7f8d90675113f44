"""Down-casting floats to the compute dtype (fp16/bf16) without creating infinities.

Models write "minus infinity" as a large finite float32 (-1e9, float32 min) in masks:
cast to fp16 those become -inf, and a fully masked softmax row then computes
(-inf) - (-inf) = NaN. The executable's precision is a storage choice, not a change of
meaning, so finite values saturate to the target's largest finite value; true
infinities and NaNs stay what they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def finite_limit(dtype: Any) -> float:
    import ml_dtypes

    return float(ml_dtypes.finfo(np.dtype(dtype)).max)


def narrow_float(value: Any, dtype: Any) -> Any:
    """``value`` (numpy or JAX float array) cast to ``dtype`` with finite values saturated to its range."""
    target = np.dtype(dtype)
    source = np.dtype(value.dtype)
    if not np.issubdtype(source, np.floating) and source.name != "bfloat16":
        if source.kind not in "iub":
            return value.astype(target)
        value = value.astype(np.float32)  # integers beyond the target's range saturate too
        source = np.dtype(np.float32)
    limit = finite_limit(target)
    if source.itemsize > target.itemsize or source.name == "float16" and target.name == "bfloat16":
        if isinstance(value, (np.ndarray, np.generic)):
            with np.errstate(invalid="ignore"):
                clipped = np.clip(value, -limit, limit)
            value = np.where(np.isfinite(value), clipped, value)
        else:
            import jax.numpy as jnp

            value = jnp.where(jnp.isfinite(value), jnp.clip(value, -limit, limit), value)
    return value.astype(target)


__all__ = ["finite_limit", "narrow_float"]
