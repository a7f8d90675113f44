"""RNN, GRU, LSTM (ONNX layouts, forward/reverse/bidirectional) as lax.scan over time."""

from __future__ import annotations

import jax
from jax import lax

from . import op
from ._common import Unsupported, jnp

_ACTIVATIONS = {
    "sigmoid": lambda x, a, b: jax.nn.sigmoid(x),
    "tanh": lambda x, a, b: jnp.tanh(x),
    "relu": lambda x, a, b: jnp.maximum(x, 0),
    "leakyrelu": lambda x, a, b: jnp.where(x >= 0, x, a * x),
    "thresholdedrelu": lambda x, a, b: jnp.where(x > a, x, 0),
    "scaledtanh": lambda x, a, b: a * jnp.tanh(b * x),
    "hardsigmoid": lambda x, a, b: jnp.clip(a * x + b, 0, 1),
    "elu": lambda x, a, b: jnp.where(x >= 0, x, a * jnp.expm1(x)),
    "softsign": lambda x, a, b: x / (1 + jnp.abs(x)),
    "softplus": lambda x, a, b: jax.nn.softplus(x),
    "affine": lambda x, a, b: a * x + b,
}
_DEFAULT_ALPHA = {"leakyrelu": 0.01, "thresholdedrelu": 1.0, "hardsigmoid": 0.2, "elu": 1.0, "affine": 1.0,
                  "scaledtanh": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5, "scaledtanh": 1.0, "affine": 0.0}


def _activations(n, defaults, directions):
    names = n.attr("activations") or defaults * directions
    alphas = list(n.attr("activation_alpha") or [])
    betas = list(n.attr("activation_beta") or [])
    fns = []
    for i, name in enumerate(names):
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise Unsupported(f"RNN activation {name}")
        a = alphas[i] if i < len(alphas) else _DEFAULT_ALPHA.get(key, 0.0)
        b = betas[i] if i < len(betas) else _DEFAULT_BETA.get(key, 0.0)
        fns.append(lambda x, f=_ACTIVATIONS[key], a=a, b=b: f(x, a, b))
    return fns


def _run(n, x, gates, init_states, cell, seq_lens):
    """Shared driver: layout, directions, sequence lengths. ``cell(d, x_t, states) -> states``."""
    layout = n.attr("layout", 0)
    x = jnp.asarray(x)
    if layout:
        x = jnp.swapaxes(x, 0, 1)  # -> [seq, batch, input]
    seq, batch = x.shape[:2]
    direction = n.attr("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    lens = None if seq_lens is None else jnp.asarray(seq_lens).astype(jnp.int32)
    all_y, finals = [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        states = tuple(s[d] for s in init_states)
        steps = jnp.arange(seq)

        def step(carry, inputs, d=d, reverse=reverse):
            x_t, t = inputs
            new = cell(d, x_t, carry)
            if lens is not None:
                valid = (t < lens)[:, None]
                new = tuple(jnp.where(valid, nv, ov) for nv, ov in zip(new, carry))
                out = jnp.where(valid, new[0], 0)
            else:
                out = new[0]
            return new, out

        xs = (jnp.flip(x, 0), jnp.flip(steps, 0)) if reverse and lens is None else (x, steps)
        if reverse and lens is not None:
            # reverse each sequence within its own length
            idx = jnp.where(steps[:, None] < lens[None, :], lens[None, :] - 1 - steps[:, None], steps[:, None])
            xr = jnp.take_along_axis(x, idx[:, :, None], axis=0)
            final, ys = lax.scan(step, states, (xr, steps))
            ys = jnp.take_along_axis(ys, idx[:, :, None], axis=0)
        else:
            final, ys = lax.scan(step, states, xs)
            if reverse:
                ys = jnp.flip(ys, 0)
        all_y.append(ys)
        finals.append(final)
    y = jnp.stack(all_y, axis=1)  # [seq, dirs, batch, hidden]
    final_states = [jnp.stack([f[k] for f in finals]) for k in range(len(finals[0]))]
    if layout:
        y = jnp.transpose(y, (2, 0, 1, 3))
        final_states = [jnp.swapaxes(s, 0, 1) for s in final_states]
    return (y, *final_states)


def _init(value, dirs, batch, hidden, dtype, layout):
    if value is None:
        return jnp.zeros((dirs, batch, hidden), dtype)
    value = jnp.asarray(value)
    return jnp.swapaxes(value, 0, 1) if layout else value


def _batch(n, x):
    return x.shape[1] if not n.attr("layout", 0) else x.shape[0]


@op("RNN")
def rnn(n, x, w, r, b=None, seq_lens=None, h0=None):
    hidden = n["hidden_size"]
    dirs = w.shape[0]
    f = _activations(n, ["Tanh"], dirs)
    bias = jnp.zeros((dirs, 2 * hidden), x.dtype) if b is None else jnp.asarray(b)
    h = _init(h0, dirs, _batch(n, x), hidden, x.dtype, n.attr("layout", 0))

    def cell(d, x_t, states):
        (h_t,) = states
        return (f[d](x_t @ w[d].T + h_t @ r[d].T + bias[d, :hidden] + bias[d, hidden:]),)

    y, h_n = _run(n, x, None, (h,), cell, seq_lens)
    return y, h_n


@op("GRU")
def gru(n, x, w, r, b=None, seq_lens=None, h0=None):
    hidden = n["hidden_size"]
    dirs = w.shape[0]
    acts = _activations(n, ["Sigmoid", "Tanh"], dirs)
    bias = jnp.zeros((dirs, 6 * hidden), x.dtype) if b is None else jnp.asarray(b)
    linear_before_reset = n.attr("linear_before_reset", 0)
    h = _init(h0, dirs, _batch(n, x), hidden, x.dtype, n.attr("layout", 0))

    def cell(d, x_t, states):
        (h_t,) = states
        f, g = acts[2 * d], acts[2 * d + 1]
        wz, wr, wh = jnp.split(w[d], 3)
        rz, rr, rh = jnp.split(r[d], 3)
        wbz, wbr, wbh, rbz, rbr, rbh = jnp.split(bias[d], 6)
        z = f(x_t @ wz.T + h_t @ rz.T + wbz + rbz)
        rt = f(x_t @ wr.T + h_t @ rr.T + wbr + rbr)
        if linear_before_reset:
            hh = g(x_t @ wh.T + rt * (h_t @ rh.T + rbh) + wbh)
        else:
            hh = g(x_t @ wh.T + (rt * h_t) @ rh.T + rbh + wbh)
        return ((1 - z) * hh + z * h_t,)

    y, h_n = _run(n, x, None, (h,), cell, seq_lens)
    return y, h_n


@op("LSTM")
def lstm(n, x, w, r, b=None, seq_lens=None, h0=None, c0=None, p=None):
    hidden = n["hidden_size"]
    dirs = w.shape[0]
    acts = _activations(n, ["Sigmoid", "Tanh", "Tanh"], dirs)
    layout = n.attr("layout", 0)
    bias = jnp.zeros((dirs, 8 * hidden), x.dtype) if b is None else jnp.asarray(b)
    peep = jnp.zeros((dirs, 3 * hidden), x.dtype) if p is None else jnp.asarray(p)
    batch = _batch(n, x)
    h = _init(h0, dirs, batch, hidden, x.dtype, layout)
    c = _init(c0, dirs, batch, hidden, x.dtype, layout)
    input_forget = n.attr("input_forget", 0)

    def cell(d, x_t, states):
        h_t, c_t = states
        f, g, hf = acts[3 * d], acts[3 * d + 1], acts[3 * d + 2]
        gates = x_t @ w[d].T + h_t @ r[d].T + bias[d, :4 * hidden] + bias[d, 4 * hidden:]
        i, o, fg, cc = jnp.split(gates, 4, axis=-1)
        pi, po, pf = jnp.split(peep[d], 3)
        i = f(i + pi * c_t)
        fg = f(fg + pf * c_t)
        if input_forget:
            i = 1 - fg
        cc = g(cc)
        c_new = fg * c_t + i * cc
        o = f(o + po * c_new)
        return (o * hf(c_new), c_new)

    y, h_n, c_n = _run(n, x, None, (h, c), cell, seq_lens)
    return y, h_n, c_n
