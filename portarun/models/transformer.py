"""Built-in transformer encoder block(s), written the way PyTorch exports them.

Multi-head self-attention with the head split done through a run-time shape
chain (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), residual Adds,
LayerNormalization, and an FFN with the exact (Erf) GELU. Batch and sequence
are symbolic (``batch``, ``seq``).
"""

from __future__ import annotations

import math

import numpy as np

from ..model import Model
from ._builder import FLOAT, GraphBuilder


def build(*, seed: int = 0, hidden: int = 256, heads: int = 4, ffn: int = 1024, layers: int = 1) -> Model:
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    head_dim = hidden // heads
    g = GraphBuilder("transformer", seed=seed)
    x = g.input("x", FLOAT, ["batch", "seq", hidden])

    zero = g.const("const.zero", np.array(0, dtype=np.int64))
    one = g.const("const.one", np.array(1, dtype=np.int64))
    axes0 = g.const("const.axes0", np.array([0], dtype=np.int64))
    heads_dims = g.const("const.heads_dims", np.array([heads, head_dim], dtype=np.int64))
    hidden_dim = g.const("const.hidden_dim", np.array([hidden], dtype=np.int64))
    scale = g.const("const.scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    half = g.const("const.half", np.array(0.5, dtype=np.float32))
    one_f = g.const("const.one_f", np.array(1.0, dtype=np.float32))
    sqrt2 = g.const("const.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))

    # batch and seq as 1-element tensors, computed at run time like an exporter does
    shape = g.node("Shape", [x], name="shape")
    batch = g.node("Unsqueeze", [g.node("Gather", [shape, zero], name="gather_batch", axis=0), axes0],
                   name="unsqueeze_batch")
    seq = g.node("Unsqueeze", [g.node("Gather", [shape, one], name="gather_seq", axis=0), axes0],
                 name="unsqueeze_seq")
    split_shape = g.node("Concat", [batch, seq, heads_dims], name="split_heads_shape", axis=0)
    merge_shape = g.node("Concat", [batch, seq, hidden_dim], name="merge_heads_shape", axis=0)

    def linear(inp: str, name: str, k: int, n: int) -> str:
        w = g.weight(f"{name}.weight", (k, n))  # [K, N], as torch exports nn.Linear (transposed)
        b = g.weight(f"{name}.bias", (n,), scale=0.02)
        return g.node("Add", [g.node("MatMul", [inp, w], name=f"{name}.matmul"), b], name=f"{name}.add")

    def layer_norm(inp: str, name: str) -> str:
        gamma = g.const(f"{name}.weight", (1.0 + 0.05 * g.rng.standard_normal(hidden)).astype(np.float32))
        beta = g.const(f"{name}.bias", (0.05 * g.rng.standard_normal(hidden)).astype(np.float32))
        return g.node("LayerNormalization", [inp, gamma, beta], name=name, axis=-1, epsilon=1e-5)

    for i in range(layers):
        p = f"layer{i}"
        q = linear(x, f"{p}.attn.q", hidden, hidden)
        k = linear(x, f"{p}.attn.k", hidden, hidden)
        v = linear(x, f"{p}.attn.v", hidden, hidden)
        q = g.node("Transpose", [g.node("Reshape", [q, split_shape], name=f"{p}.attn.q_split")],
                   name=f"{p}.attn.q_t", perm=[0, 2, 1, 3])
        k = g.node("Transpose", [g.node("Reshape", [k, split_shape], name=f"{p}.attn.k_split")],
                   name=f"{p}.attn.k_t", perm=[0, 2, 3, 1])
        v = g.node("Transpose", [g.node("Reshape", [v, split_shape], name=f"{p}.attn.v_split")],
                   name=f"{p}.attn.v_t", perm=[0, 2, 1, 3])
        scores = g.node("Mul", [g.node("MatMul", [q, k], name=f"{p}.attn.qk"), scale], name=f"{p}.attn.scale")
        probs = g.node("Softmax", [scores], name=f"{p}.attn.softmax", axis=-1)
        context = g.node("MatMul", [probs, v], name=f"{p}.attn.pv")
        context = g.node("Transpose", [context], name=f"{p}.attn.ctx_t", perm=[0, 2, 1, 3])
        context = g.node("Reshape", [context, merge_shape], name=f"{p}.attn.merge")
        attn = linear(context, f"{p}.attn.out", hidden, hidden)
        x = layer_norm(g.node("Add", [x, attn], name=f"{p}.attn.residual"), f"{p}.ln1")
        h = linear(x, f"{p}.ffn.up", hidden, ffn)
        erf = g.node("Erf", [g.node("Div", [h, sqrt2], name=f"{p}.ffn.gelu_div")], name=f"{p}.ffn.gelu_erf")
        gelu = g.node("Mul", [g.node("Mul", [h, half], name=f"{p}.ffn.gelu_half"),
                              g.node("Add", [erf, one_f], name=f"{p}.ffn.gelu_add")], name=f"{p}.ffn.gelu")
        h = linear(gelu, f"{p}.ffn.down", ffn, hidden)
        x = layer_norm(g.node("Add", [x, h], name=f"{p}.ffn.residual"), f"{p}.ln2")
    g.node("Identity", [x], name="output", outputs=["y"])
    g.output("y", FLOAT, ["batch", "seq", hidden])
    return g.build(f"portarun built-in transformer encoder (hidden {hidden}, {heads} heads, ffn {ffn}, "
                   f"{layers} layer(s)), seed {seed}")
