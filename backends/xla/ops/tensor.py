"""Indexing: Gather/Scatter families, OneHot, Trilu, data-dependent-shape ops, space/depth moves."""

from __future__ import annotations

import math

from . import op
from ._common import concrete, is_const, jnp, norm_axis, np, static_ints, xp


def _wrap(indices, dim):
    m = xp(indices)
    indices = indices.astype(np.int64) if m is np else indices
    return m.where(indices < 0, indices + dim, indices)


@op("Gather")
def gather(n, x, indices):
    axis = norm_axis(n.attr("axis", 0), x.ndim)
    m = xp(x, indices)
    idx = _wrap(indices, x.shape[axis])
    if m is np:
        return np.take(x, idx, axis=axis)
    return jnp.take(x, idx, axis=axis)


@op("GatherElements")
def gather_elements(n, x, indices):
    axis = norm_axis(n.attr("axis", 0), x.ndim)
    return xp(x, indices).take_along_axis(x, _wrap(indices, x.shape[axis]), axis=axis)


@op("GatherND")
def gather_nd(n, x, indices):
    b = n.attr("batch_dims", 0)
    x, indices = jnp.asarray(x), jnp.asarray(indices)
    k = indices.shape[-1]
    indices = jnp.where(indices < 0, indices + jnp.asarray(x.shape[b:b + k]), indices)
    batch_shape = x.shape[:b]
    bsize = math.prod(batch_shape)
    xf = x.reshape((bsize,) + x.shape[b:])
    idx = indices.reshape((bsize, -1, k))
    out = jnp.stack([xf[i][tuple(idx[i][:, j] for j in range(k))] for i in range(bsize)])
    return out.reshape(indices.shape[:-1] + x.shape[b + k:])


def _scatter_reduce(target, index, updates, reduction):
    ref = target.at[index]
    if reduction in (None, "none"):
        return ref.set(updates)
    return {"add": ref.add, "mul": ref.multiply, "max": ref.max, "min": ref.min}[reduction](updates)


@op("ScatterElements", "Scatter")
def scatter_elements(n, x, indices, updates):
    axis = norm_axis(n.attr("axis", 0), x.ndim)
    x, indices, updates = jnp.asarray(x), jnp.asarray(indices), jnp.asarray(updates)
    indices = jnp.where(indices < 0, indices + x.shape[axis], indices)
    grids = list(jnp.indices(indices.shape, sparse=True))
    grids[axis] = indices
    return _scatter_reduce(x, tuple(grids), updates, n.attr("reduction", "none"))


@op("ScatterND")
def scatter_nd(n, x, indices, updates):
    x, indices, updates = jnp.asarray(x), jnp.asarray(indices), jnp.asarray(updates)
    k = indices.shape[-1]
    index = tuple(indices[..., j] for j in range(k))
    return _scatter_reduce(x, index, updates, n.attr("reduction", "none"))


@op("OneHot")
def one_hot(n, indices, depth, values):
    depth = int(static_ints(depth, "OneHot depth")[0]) if is_const(depth) else int(concrete(depth, "depth").item())
    axis = n.attr("axis", -1)
    rank = indices.ndim + 1
    axis = norm_axis(axis, rank)
    indices = jnp.asarray(indices)
    indices = jnp.where(indices < 0, indices + depth, indices).astype(jnp.int64)
    hot = jnp.expand_dims(indices, axis) == jnp.arange(depth).reshape([-1 if i == axis else 1 for i in range(rank)])
    values = jnp.asarray(values)
    return jnp.where(hot, values[1], values[0])


@op("Trilu")
def trilu(n, x, k=None):
    k = int(static_ints(k, "Trilu k")[0]) if k is not None else 0
    m = xp(x)
    return m.triu(x, k) if n.attr("upper", 1) else m.tril(x, k)


@op("NonZero")
def non_zero(n, x):
    values = concrete(x, "NonZero")
    return np.asarray(np.nonzero(values), dtype=np.int64) if is_const(x) else \
        jnp.asarray(np.asarray(np.nonzero(values), dtype=np.int64))


@op("Compress")
def compress(n, x, condition):
    cond = concrete(condition, "Compress condition").astype(bool)
    axis = n.attr("axis")
    m = xp(x)
    if axis is None:
        flat = m.reshape(x, (-1,))
        return flat[np.nonzero(cond[:flat.shape[0]])[0]]
    axis = norm_axis(axis, x.ndim)
    keep = np.nonzero(cond[:x.shape[axis]])[0]
    return m.take(x, keep, axis=axis)


@op("Unique")
def unique(n, x):
    values = concrete(x, "Unique")
    axis = n.attr("axis")
    sorted_ = n.attr("sorted", 1)
    y, first, inverse, counts = np.unique(values, return_index=True, return_inverse=True, return_counts=True,
                                          axis=axis)
    if not sorted_:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts = first[order], counts[order]
        inverse = rank[inverse.reshape(-1)]
    outs = (y, first.astype(np.int64), inverse.reshape(-1).astype(np.int64), counts.astype(np.int64))
    return outs if is_const(x) else tuple(jnp.asarray(o) for o in outs)


@op("ReverseSequence")
def reverse_sequence(n, x, lengths):
    batch_axis, time_axis = n.attr("batch_axis", 1), n.attr("time_axis", 0)
    x = jnp.asarray(x)
    t = jnp.arange(x.shape[time_axis])
    lengths = jnp.asarray(lengths)
    shape_t = [1] * x.ndim
    shape_t[time_axis] = -1
    shape_b = [1] * x.ndim
    shape_b[batch_axis] = -1
    tt = t.reshape(shape_t)
    ll = lengths.reshape(shape_b)
    src = jnp.where(tt < ll, ll - 1 - tt, tt)
    src = jnp.broadcast_to(src, x.shape)
    return jnp.take_along_axis(x, src, axis=time_axis)


@op("DepthToSpace")
def depth_to_space(n, x):
    b = n["blocksize"]
    N, C, H, W = x.shape
    m = xp(x)
    if n.attr("mode", "DCR") == "DCR":
        y = m.reshape(x, (N, b, b, C // (b * b), H, W)).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = m.reshape(x, (N, C // (b * b), b, b, H, W)).transpose(0, 1, 4, 2, 5, 3)
    return m.reshape(y, (N, C // (b * b), H * b, W * b))


@op("SpaceToDepth")
def space_to_depth(n, x):
    b = n["blocksize"]
    N, C, H, W = x.shape
    m = xp(x)
    y = m.reshape(x, (N, C, H // b, b, W // b, b))
    # DCR (default): channels ordered (block row, block col, channel); CRD: (channel, block row, block col)
    y = y.transpose(0, 1, 3, 5, 2, 4) if n.attr("mode", "DCR") == "CRD" else y.transpose(0, 3, 5, 1, 2, 4)
    return m.reshape(y, (N, C * b * b, H // b, W // b))


@op("CenterCropPad")
def center_crop_pad(n, x, shape_):
    target = static_ints(shape_, "CenterCropPad shape")
    axes = n.attr("axes") or list(range(x.ndim))
    axes = [norm_axis(a, x.ndim) for a in axes]
    x = jnp.asarray(x)
    for a, want in zip(axes, target):
        have = x.shape[a]
        if have > want:
            start = (have - want) // 2
            x = jnp.take(x, jnp.arange(start, start + want), axis=a)
        elif have < want:
            before = (want - have) // 2
            width = [(0, 0)] * x.ndim
            width[a] = (before, want - have - before)
            x = jnp.pad(x, width)
    return x


@op("TensorScatter")
def tensor_scatter(n, cache, update, write_indices=None):
    """KV-cache write: update's sequence slice goes to cache[b, ..., write_indices[b] + i, ...]."""
    cache, update = jnp.asarray(cache), jnp.asarray(update)
    axis = norm_axis(n.attr("axis", -2), cache.ndim)
    batch, seq, size = cache.shape[0], update.shape[axis], cache.shape[axis]
    start = jnp.zeros((batch,), jnp.int64) if write_indices is None else jnp.asarray(write_indices).astype(jnp.int64)
    pos = start[:, None] + jnp.arange(seq, dtype=jnp.int64)[None, :]
    if n.attr("mode", "linear") == "circular":
        pos = pos % size
    grids = list(jnp.indices(update.shape, sparse=True))
    shape = [1] * update.ndim
    shape[0], shape[axis] = batch, seq
    grids[axis] = pos.reshape(shape)
    return cache.at[tuple(grids)].set(update)
