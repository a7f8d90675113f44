"""com.microsoft DynamicQuantizeLSTM: what ``quantize_dynamic`` writes for an LSTM.

Weights are int8/uint8, stored [directions, input, 4*hidden] (transposed from ONNX's LSTM),
gates in ONNX's i, o, f, c order. Like ORT's CPU kernel, the input projection quantizes all of
X at once to uint8 (DynamicQuantizeLinear's formula) and each step quantizes the previous
hidden state before the recurrent product; integer accumulation, then scale by
``a_scale * w_scale[column]``. One ``lax.scan`` over time per direction.
"""

from __future__ import annotations

from jax import lax

from . import op
from ._common import Unsupported, jax, jnp

MS = "com.microsoft"


def _quantize_u8(x):
    lo = jnp.minimum(jnp.min(x), 0.0)
    hi = jnp.maximum(jnp.max(x), 0.0)
    scale = (hi - lo) / 255.0
    safe = jnp.where(scale == 0, 1.0, scale)
    zero = jnp.clip(jnp.round(0 - lo / safe), 0, 255)
    return jnp.clip(jnp.round(x / safe) + zero, 0, 255).astype(jnp.int32) - zero.astype(jnp.int32), scale


def _qgemm(x, weight, scale, zero):
    """x float [M, K] @ int weight [K, N] the way ORT's quantized RNN gemm does it."""
    q, x_scale = _quantize_u8(x)
    w = weight.astype(jnp.int32) - zero
    acc = jnp.matmul(q, w, preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * (x_scale * scale)


@op("DynamicQuantizeLSTM", domain=MS)
def dynamic_quantize_lstm(n, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None,
                          w_scale=None, w_zero=None, r_scale=None, r_zero=None):
    if n.attr("clip") is not None or n.attr("input_forget", 0):
        raise Unsupported("DynamicQuantizeLSTM with clip or input_forget")
    activations = n.attr("activations")
    if activations and [a.lower() for a in activations] not in (["sigmoid", "tanh", "tanh"],
                                                                 ["sigmoid", "tanh", "tanh"] * 2):
        raise Unsupported(f"DynamicQuantizeLSTM with activations {activations}")
    x = jnp.asarray(x).astype(jnp.float32)
    seq, batch, _ = x.shape
    hidden = int(n["hidden_size"])
    direction = n.attr("direction", "forward")
    directions = 2 if direction == "bidirectional" else 1
    w, r = jnp.asarray(w), jnp.asarray(r)
    lengths = (jnp.full((batch,), seq, jnp.int32) if sequence_lens is None
               else jnp.asarray(sequence_lens).astype(jnp.int32))
    zeros = jnp.zeros((directions, batch, hidden), jnp.float32)
    h0 = zeros if initial_h is None else jnp.asarray(initial_h).astype(jnp.float32)
    c0 = zeros if initial_c is None else jnp.asarray(initial_c).astype(jnp.float32)
    ys, hs, cs = [], [], []
    for d in range(directions):
        reverse = direction == "reverse" or d == 1
        # scales / zero points: [directions] per tensor, or [directions, 4*hidden] per column
        w_s, w_z = jnp.asarray(w_scale).astype(jnp.float32)[d], jnp.asarray(w_zero).astype(jnp.int32)[d]
        r_s, r_z = jnp.asarray(r_scale).astype(jnp.float32)[d], jnp.asarray(r_zero).astype(jnp.int32)[d]
        bias = jnp.zeros((4 * hidden,), jnp.float32) if b is None else \
            jnp.asarray(b)[d, :4 * hidden].astype(jnp.float32) + jnp.asarray(b)[d, 4 * hidden:].astype(jnp.float32)
        peep = jnp.zeros((3 * hidden,), jnp.float32) if p is None else jnp.asarray(p)[d].astype(jnp.float32)
        steps = jnp.arange(seq)
        if reverse:  # each sequence reversed within its own length
            index = jnp.where(steps[:, None] < lengths[None, :], lengths[None, :] - 1 - steps[:, None], steps[:, None])
            inputs = jnp.take_along_axis(x, index[:, :, None], axis=0)
        else:
            inputs = x
        projected = _qgemm(inputs.reshape(seq * batch, -1), w[d], w_s, w_z).reshape(seq, batch, 4 * hidden) + bias

        def step(state, item, r_d=r[d], r_s=r_s, r_z=r_z, peep=peep):
            h, c = state
            gates_x, t = item
            # ORT splits the batch across its threads and quantizes each chunk's hidden state on its
            # own; chunks are single rows when it has a thread per row: quantize row by row
            gates = gates_x + jax.vmap(lambda row: _qgemm(row[None, :], r_d, r_s, r_z)[0])(h)
            gi, go, gf, gc = jnp.split(gates, 4, axis=-1)
            pi, po, pf = jnp.split(peep, 3)
            i = jax.nn.sigmoid(gi + pi * c)
            f = jax.nn.sigmoid(gf + pf * c)
            c_new = f * c + i * jnp.tanh(gc)
            o = jax.nn.sigmoid(go + po * c_new)
            h_new = o * jnp.tanh(c_new)
            live = (t < lengths)[:, None]
            h_new, c_new = jnp.where(live, h_new, h), jnp.where(live, c_new, c)
            return (h_new, c_new), jnp.where(live, h_new, 0.0)

        (h_last, c_last), y = lax.scan(step, (h0[d], c0[d]), (projected, steps))
        if reverse:
            y = jnp.take_along_axis(y, index[:, :, None], axis=0)
            y = jnp.where((steps[:, None] < lengths[None, :])[:, :, None], y, 0.0)
        ys.append(y)
        hs.append(h_last)
        cs.append(c_last)
    y = jnp.stack(ys, axis=1)  # [seq, directions, batch, hidden]
    outs = (y, jnp.stack(hs), jnp.stack(cs))
    return tuple(o if n.output_used(i) else None for i, o in enumerate(outs))[:max(n.n_outputs, 1)]


__all__ = ["MS"]
