"""Conv, ConvTranspose, ConvInteger (NC... layouts, lax.conv_general_dilated)."""

from __future__ import annotations

from jax import lax

from . import op
from ._common import jnp, np


def spatial_pads(n, in_sizes, kernel, strides, dilations):
    """(begin, end) padding per spatial dim from ``pads``/``auto_pad``."""
    rank = len(in_sizes)
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * rank
    pads = n.attr("pads") or [0] * (2 * rank)
    return [(pads[i], pads[i + rank]) for i in range(rank)]


def _dims(rank):
    spatial = "".join("DHWXYZ"[-rank:][i] if rank <= 3 else chr(ord("a") + i) for i in range(rank))
    lhs = "NC" + spatial
    rhs = "OI" + spatial
    return lax.conv_dimension_numbers((1,) * (rank + 2), (1,) * (rank + 2), (lhs, rhs, lhs))


def conv(n, x, w, b=None, *, preferred=None):
    rank = x.ndim - 2
    kernel = n.attr("kernel_shape") or list(w.shape[2:])
    strides = n.attr("strides") or [1] * rank
    dilations = n.attr("dilations") or [1] * rank
    pads = spatial_pads(n, x.shape[2:], kernel, strides, dilations)
    y = lax.conv_general_dilated(x, w, window_strides=strides, padding=pads, rhs_dilation=dilations,
                                 dimension_numbers=_dims(rank), feature_group_count=n.attr("group", 1),
                                 preferred_element_type=preferred)
    if b is not None:
        y = y + jnp.reshape(b, (1, -1) + (1,) * rank).astype(y.dtype)
    return y


@op("Conv")
def conv_op(n, x, w, b=None):
    return conv(n, jnp.asarray(x), jnp.asarray(w), b)


@op("ConvInteger")
def conv_integer(n, x, w, x_zero=None, w_zero=None):
    x = jnp.asarray(x).astype(jnp.int32)
    w = jnp.asarray(w).astype(jnp.int32)
    if x_zero is not None:
        x = x - jnp.asarray(x_zero).astype(jnp.int32)
    if w_zero is not None:
        wz = jnp.asarray(w_zero).astype(jnp.int32)
        w = w - (jnp.reshape(wz, (-1,) + (1,) * (w.ndim - 1)) if wz.ndim == 1 else wz)
    return conv(n, x, w, preferred=jnp.int32)


@op("ConvTranspose")
def conv_transpose(n, x, w, b=None):
    x, w = jnp.asarray(x), jnp.asarray(w)
    rank = x.ndim - 2
    group = n.attr("group", 1)
    kernel = n.attr("kernel_shape") or list(w.shape[2:])
    strides = n.attr("strides") or [1] * rank
    dilations = n.attr("dilations") or [1] * rank
    out_pad = n.attr("output_padding") or [0] * rank
    in_sizes = x.shape[2:]
    output_shape = n.attr("output_shape")
    auto = n.attr("auto_pad", "NOTSET")
    if output_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is None:
            output_shape = [s * st for s, st in zip(in_sizes, strides)]
        output_shape = list(output_shape)[-rank:]
        pads = []
        for i in range(rank):
            total = strides[i] * (in_sizes[i] - 1) + out_pad[i] + ((kernel[i] - 1) * dilations[i] + 1) \
                - output_shape[i]
            half = int(total / 2)  # C++ division: toward zero, also for a negative total (extra outputs)
            pads.append((total - half, half) if auto == "SAME_LOWER" else (half, total - half))
    elif auto == "VALID":
        pads = [(0, 0)] * rank
    else:
        p = n.attr("pads") or [0] * (2 * rank)
        pads = [(p[i], p[i + rank]) for i in range(rank)]
    c_in = w.shape[0]
    c_out_g = w.shape[1]
    # [C_in, C_out/g, k...] -> [C_out, C_in/g, k...], spatially flipped
    wg = jnp.reshape(w, (group, c_in // group, c_out_g) + tuple(w.shape[2:]))
    wg = jnp.swapaxes(wg, 1, 2)
    wt = jnp.reshape(wg, (group * c_out_g, c_in // group) + tuple(w.shape[2:]))
    wt = jnp.flip(wt, axis=tuple(range(2, 2 + rank)))
    padding = [((k - 1) * d - pb, (k - 1) * d - pe + op_)
               for k, d, (pb, pe), op_ in zip(kernel, dilations, pads, out_pad)]
    y = lax.conv_general_dilated(x, wt, window_strides=(1,) * rank, padding=padding, lhs_dilation=strides,
                                 rhs_dilation=dilations, dimension_numbers=_dims(rank), feature_group_count=group)
    if b is not None:
        y = y + jnp.reshape(b, (1, -1) + (1,) * rank).astype(y.dtype)
    return y


@op("Col2Im")
def col2im(n, x, image_shape, block_shape):
    """Sum the columns of x [N, C*prod(block), L] back into images [N, C, *image_shape] (im2col's adjoint)."""
    import itertools

    from ._common import static_ints

    image = static_ints(image_shape, "Col2Im image_shape")
    block = static_ints(block_shape, "Col2Im block_shape")
    r = len(image)
    dil = n.attr("dilations") or [1] * r
    strides = n.attr("strides") or [1] * r
    pads = n.attr("pads") or [0] * (2 * r)
    x = jnp.asarray(x)
    N = x.shape[0]
    C = x.shape[1] // int(np.prod(block))
    padded = [image[i] + pads[i] + pads[i + r] for i in range(r)]
    counts = [(padded[i] - (dil[i] * (block[i] - 1) + 1)) // strides[i] + 1 for i in range(r)]
    cols = x.reshape((N, C) + tuple(block) + tuple(counts))
    out = jnp.zeros((N, C) + tuple(padded), x.dtype)
    for k in itertools.product(*[range(b) for b in block]):
        index = tuple(slice(k[i] * dil[i], k[i] * dil[i] + (counts[i] - 1) * strides[i] + 1, strides[i])
                      for i in range(r))
        out = out.at[(slice(None), slice(None)) + index].add(cols[(slice(None), slice(None)) + k])
    crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(r))
    return out[(slice(None), slice(None)) + crop]
