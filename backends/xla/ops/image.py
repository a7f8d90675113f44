"""Resize: separable per-axis interpolation matrices computed at compile time, applied as dots.

Resize is linear in its input along each resized axis, so for static shapes it
is exactly ``y = M_axis @ x`` per axis with M of shape [out, in]. The matrices
come from onnx's own reference resize (its vectorized 1-D interpolation applied
to an identity matrix), so every coordinate-transformation mode, nearest mode,
cubic coefficient, antialias and exclude_outside rule is the specification's;
XLA runs only the dots (or a gather, for nearest).
"""

from __future__ import annotations

import math

from . import op
from ._common import Unsupported, concrete, jnp, np


def _coeff_fn(mode, nearest_mode, antialias, cubic_a):
    from onnx.reference.ops import op_resize as R

    if mode == "nearest":
        return lambda ratio, scale: R._nearest_coeffs(ratio, mode=nearest_mode)
    if mode == "linear":
        return R._linear_coeffs_antialias if antialias else R._linear_coeffs
    if mode == "cubic":
        fn = R._cubic_coeffs_antialias if antialias else R._cubic_coeffs
        return lambda ratio, scale: fn(ratio, scale, A=cubic_a)
    raise Unsupported(f"Resize mode {mode}")


def _matrix(in_size, out_size, scale, coeffs, roi, ctm, exclude_outside):
    from onnx.reference.ops import op_resize as R

    try:
        along = R._interpolate_1d_along_axis
    except AttributeError:  # pragma: no cover - older onnx
        raise Unsupported("Resize needs onnx>=1.17's vectorized reference interpolation") from None
    eye = np.eye(in_size, dtype=np.float64)
    m = along(eye, 0, scale, out_size, coeffs, roi=roi, extrapolation_value=0.0,
              coordinate_transformation_mode=ctm, exclude_outside=exclude_outside)
    outside = along(np.zeros((in_size, 1)), 0, scale, out_size, coeffs, roi=roi, extrapolation_value=1.0,
                    coordinate_transformation_mode=ctm, exclude_outside=exclude_outside)[:, 0]
    return m, outside.astype(bool)


@op("Resize", since=10)
def resize(n, x, roi=None, scales=None, sizes=None):
    if n.opset < 11:  # Resize-10: (X, scales)
        scales, roi = roi, None
    r = x.ndim
    mode = n.attr("mode", "nearest")
    ctm = n.attr("coordinate_transformation_mode", "half_pixel" if n.opset >= 11 else "asymmetric")
    nearest_mode = n.attr("nearest_mode", "round_prefer_floor")
    antialias = n.attr("antialias", 0)
    axes = n.attr("axes")
    axes = [a + r if a < 0 else a for a in axes] if axes else list(range(r))
    policy = n.attr("keep_aspect_ratio_policy", "stretch")
    roi_a = concrete(roi, "Resize roi").astype(np.float64).reshape(-1) if roi is not None else None
    roi_v = roi_a if roi_a is not None and roi_a.size else None
    scale_a = concrete(scales, "Resize scales").reshape(-1) if scales is not None else None
    scale_v = [float(v) for v in scale_a] if scale_a is not None and scale_a.size else None
    size_a = concrete(sizes, "Resize sizes").reshape(-1) if sizes is not None else None
    size_v = [int(v) for v in size_a] if size_a is not None and size_a.size else None
    full_scale = [1.0] * r
    full_size = list(x.shape)
    full_roi = None
    if roi_v is not None:
        full_roi = [0.0] * r + [1.0] * r
        k = len(axes)
        if len(roi_v) == 2 * r and k != r:
            full_roi = list(roi_v)
        else:
            for i, a in enumerate(axes):
                full_roi[a], full_roi[r + a] = roi_v[i], roi_v[k + i]
    if size_v is not None:
        for i, a in enumerate(axes):
            full_size[a] = size_v[i] if len(size_v) == len(axes) else size_v[a]
        full_scale = [full_size[i] / x.shape[i] for i in range(r)]
        if policy != "stretch":
            chosen = [full_scale[a] for a in axes]
            s = min(chosen) if policy == "not_larger" else max(chosen)
            full_scale = [s if i in axes else 1.0 for i in range(r)]
            full_size = [int(s * x.shape[i] + 0.5) if i in axes else x.shape[i] for i in range(r)]
    elif scale_v is not None:
        for i, a in enumerate(axes):
            full_scale[a] = scale_v[i] if len(scale_v) == len(axes) else scale_v[a]
        full_size = [int(full_scale[i] * x.shape[i]) for i in range(r)]
    else:
        raise Unsupported("Resize without scales or sizes")
    coeffs = _coeff_fn(mode, nearest_mode, antialias, n.attr("cubic_coeff_a", -0.75))
    dtype = x.dtype
    y = jnp.asarray(x)
    compute = y.dtype if jnp.issubdtype(y.dtype, jnp.floating) and y.dtype != jnp.float16 else jnp.float32
    for axis in range(r):
        scale, out = full_scale[axis], int(full_size[axis])
        axis_roi = None if full_roi is None else [full_roi[axis], full_roi[axis + r]]
        if math.isclose(scale, 1.0) and out == y.shape[axis] and (
                axis_roi is None or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0))):
            continue
        m, outside = _matrix(y.shape[axis], out, scale, coeffs, axis_roi, ctm, n.attr("exclude_outside", 0))
        if mode == "nearest" and not outside.any():
            index = np.argmax(m, axis=1)
            y = jnp.take(y, index, axis=axis)
            continue
        moved = jnp.moveaxis(y.astype(compute), axis, -1)
        res = jnp.matmul(moved, jnp.asarray(m.T, compute), precision="highest")
        if outside.any():
            res = jnp.where(jnp.asarray(outside), jnp.asarray(n.attr("extrapolation_value", 0.0), compute), res)
        y = jnp.moveaxis(res, -1, axis)
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        y = jnp.clip(jnp.round(y), info.min, info.max)
    return y.astype(dtype)


def _reflect(x, lo, hi):
    span = hi - lo
    if span <= 0:
        return jnp.zeros_like(x)
    d = jnp.abs(x - lo)
    flips = jnp.floor(d / span)
    extra = d - flips * span
    return jnp.where(jnp.mod(flips, 2) == 0, lo + extra, hi - extra)


def _cubic_weights(t, a=-0.75):
    """Weights of the 4 neighbours at offsets -1, 0, 1, 2 for fractional position t."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@op("GridSample", since=16)
def grid_sample(n, x, grid):
    x, grid = jnp.asarray(x), jnp.asarray(grid)
    mode = n.attr("mode", "linear" if n.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = n.attr("padding_mode", "zeros")
    align = n.attr("align_corners", 0)
    N, C = x.shape[:2]
    sizes = x.shape[2:]
    r = len(sizes)
    compute = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    out_spatial = grid.shape[1:-1]
    flat = x.reshape(N, C, -1).astype(compute)
    coords = []
    for k in range(r):  # grid's last axis lists coordinates innermost dim first
        size = sizes[r - 1 - k]
        g = grid[..., k].astype(compute)
        c = ((g + 1) / 2) * (size - 1) if align else ((g + 1) * size - 1) / 2
        if padding == "border":
            c = jnp.clip(c, 0, size - 1)
        elif padding == "reflection":
            c = _reflect(c, 0.0, size - 1.0) if align else jnp.clip(_reflect(c, -0.5, size - 0.5), 0, size - 1)
        coords.append(c)
    coords = coords[::-1]  # now in spatial-dim order

    def fetch(indices):
        """Values at integer positions (one array per spatial dim), with the padding rule."""
        valid = jnp.ones(indices[0].shape, bool)
        clamped = []
        for idx, size in zip(indices, sizes):
            if padding == "zeros":
                valid = valid & (idx >= 0) & (idx < size)
            elif padding == "reflection":
                idx = _reflect(idx.astype(compute), 0.0, size - 1.0).astype(jnp.int32) if align else \
                    jnp.clip(_reflect(idx.astype(compute), -0.5, size - 0.5), 0, size - 1).astype(jnp.int32)
            clamped.append(jnp.clip(idx, 0, size - 1))
        linear = jnp.zeros(indices[0].shape, jnp.int32)
        for idx, size in zip(clamped, sizes):
            linear = linear * size + idx.astype(jnp.int32)
        gathered = jnp.take_along_axis(flat, linear.reshape(N, 1, -1), axis=2)
        gathered = gathered.reshape((N, C) + out_spatial)
        return jnp.where(valid[:, None], gathered, 0)

    if mode == "nearest":
        out = fetch([jnp.round(c).astype(jnp.int32) for c in coords])
    else:
        taps = (0, 1) if mode == "linear" else (-1, 0, 1, 2)
        bases = [jnp.floor(c) for c in coords]
        fracs = [c - b for c, b in zip(coords, bases)]
        if mode == "linear":
            weights = [[1 - f, f] for f in fracs]
        else:
            weights = [_cubic_weights(f) for f in fracs]
        out = 0
        import itertools

        for combo in itertools.product(range(len(taps)), repeat=r):
            idx = [(b + taps[t]).astype(jnp.int32) for b, t in zip(bases, combo)]
            w = 1
            for dim, t in enumerate(combo):
                w = w * weights[dim][t]
            out = out + fetch(idx) * w[:, None]
    return out.astype(x.dtype)
