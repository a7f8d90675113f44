"""Built-in MLP: x[batch, 64] -> Gemm 256 -> Relu -> Gemm 256 -> Relu -> Gemm 10 (logits)."""

from __future__ import annotations

from ..model import Model
from ._builder import FLOAT, GraphBuilder


def build(*, seed: int = 0, features: int = 64, hidden: int = 256, classes: int = 10, layers: int = 2) -> Model:
    g = GraphBuilder("mlp", seed=seed)
    x = g.input("x", FLOAT, ["batch", features])
    width = features
    for i in range(layers):
        w = g.weight(f"fc{i}.weight", (hidden, width), scale=(2.0 / width) ** 0.5)  # [N, K], transB=1
        b = g.weight(f"fc{i}.bias", (hidden,), scale=0.1)
        x = g.node("Gemm", [x, w, b], name=f"fc{i}", transB=1)
        x = g.node("Relu", [x], name=f"relu{i}")
        width = hidden
    w = g.weight("head.weight", (classes, width), scale=(1.0 / width) ** 0.5)
    b = g.weight("head.bias", (classes,), scale=0.1)
    g.node("Gemm", [x, w, b], name="head", outputs=["logits"], transB=1)
    g.output("logits", FLOAT, ["batch", classes])
    return g.build(f"portarun built-in MLP ({features}-{hidden}x{layers}-{classes}), seed {seed}")
