"""Matrix products, cumulative ops, TopK, Det."""

from __future__ import annotations

from jax import lax

from . import op
from ._common import jnp, norm_axis, np, static_ints, static_scalar, xp


def _dot_nk(x, w_nk):
    """x [..., K] times a weight stored [N, K] (transposed at compile time; DESIGN section 5)."""
    return lax.dot_general(x, w_nk, (((x.ndim - 1,), (1,)), ((), ())))


@op("MatMul")
def matmul(n, a, b):
    if n.attr("_weight_nk"):
        return _dot_nk(a, b)
    if np.issubdtype(a.dtype, np.integer) and xp(a, b) is jnp:
        return jnp.matmul(a, b, preferred_element_type=a.dtype)
    return xp(a, b).matmul(a, b)


@op("Gemm")
def gemm(n, a, b, c=None):
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    if n.attr("transA", 0):
        a = a.T
    if n.attr("_weight_nk"):
        y = _dot_nk(a, b)  # b already [N, K]
    else:
        y = jnp.matmul(a, b.T if n.attr("transB", 0) else b)
    if alpha != 1.0:
        y = y * jnp.asarray(alpha, y.dtype)
    if c is not None and beta != 0.0:
        y = y + (c * jnp.asarray(beta, y.dtype) if beta != 1.0 else c).astype(y.dtype)
    return y


@op("MatMulInteger")
def matmul_integer(n, a, b, a_zero=None, b_zero=None):
    a = jnp.asarray(a).astype(jnp.int32)
    b = jnp.asarray(b).astype(jnp.int32)
    if a_zero is not None:
        az = jnp.asarray(a_zero).astype(jnp.int32)
        a = a - (az[:, None] if az.ndim == 1 and a.ndim >= 2 else az)
    if b_zero is not None:
        b = b - jnp.asarray(b_zero).astype(jnp.int32)
    return jnp.matmul(a, b, preferred_element_type=jnp.int32)


@op("Einsum")
def einsum(n, *xs):
    equation = n["equation"].replace(" ", "")
    return jnp.einsum(equation, *xs)


def _cumulative(n, x, axis, fn):
    axis = norm_axis(int(static_scalar(axis, "CumSum axis")), x.ndim)
    x = jnp.asarray(x)
    if n.attr("reverse", 0):
        x = jnp.flip(x, axis)
    out = fn(x, axis=axis)
    if n.attr("exclusive", 0):
        identity = 0 if fn is jnp.cumsum else 1
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 0)
        out = jnp.pad(lax.slice_in_dim(out, 0, x.shape[axis] - 1, axis=axis), pad, constant_values=identity)
    if n.attr("reverse", 0):
        out = jnp.flip(out, axis)
    return out.astype(x.dtype)


@op("CumSum")
def cumsum(n, x, axis):
    return _cumulative(n, x, axis, jnp.cumsum)


@op("CumProd")
def cumprod(n, x, axis):
    return _cumulative(n, x, axis, jnp.cumprod)


@op("Det")
def det(n, x):
    return jnp.linalg.det(x)


@op("TopK")
def topk(n, x, k):
    k = static_ints(k, "TopK k")[0] if not isinstance(k, int) else k
    axis = norm_axis(n.attr("axis", -1), x.ndim)
    largest = n.attr("largest", 1)
    x = jnp.asarray(x)
    moved = jnp.moveaxis(x, axis, -1)
    size = moved.shape[-1]
    # stable order: ties keep the lower index first (as onnx specifies)
    idx = jnp.broadcast_to(jnp.arange(size), moved.shape)
    keys = -moved if largest else moved
    if jnp.issubdtype(moved.dtype, jnp.unsignedinteger) and largest:
        keys = jnp.iinfo(moved.dtype).max - moved
    _, idx_sorted = lax.sort((keys, idx), dimension=moved.ndim - 1, num_keys=2, is_stable=True)
    idx_k = idx_sorted[..., :k]
    values = jnp.take_along_axis(moved, idx_k, axis=-1)
    return jnp.moveaxis(values, -1, axis), jnp.moveaxis(idx_k, -1, axis).astype(jnp.int64)
