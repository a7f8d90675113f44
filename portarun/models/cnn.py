"""Built-in CNN: three Conv-BatchNorm-Relu stages with max pooling, global average pool, Gemm head."""

from __future__ import annotations

import numpy as np

from ..model import Model
from ._builder import FLOAT, GraphBuilder


def build(*, seed: int = 0, image: int = 32, channels: tuple[int, ...] = (16, 32, 64), classes: int = 10) -> Model:
    g = GraphBuilder("cnn", seed=seed)
    x = g.input("image", FLOAT, ["batch", 3, image, image])
    c_in = 3
    for i, c_out in enumerate(channels):
        w = g.weight(f"conv{i}.weight", (c_out, c_in, 3, 3), scale=(2.0 / (c_in * 9)) ** 0.5)
        b = g.weight(f"conv{i}.bias", (c_out,), scale=0.05)
        x = g.node("Conv", [x, w, b], name=f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        gamma = g.const(f"bn{i}.scale", (1.0 + 0.1 * g.rng.standard_normal(c_out)).astype(np.float32))
        beta = g.const(f"bn{i}.bias", (0.1 * g.rng.standard_normal(c_out)).astype(np.float32))
        mean = g.const(f"bn{i}.mean", (0.1 * g.rng.standard_normal(c_out)).astype(np.float32))
        var = g.const(f"bn{i}.var", (0.5 + g.rng.random(c_out)).astype(np.float32))
        x = g.node("BatchNormalization", [x, gamma, beta, mean, var], name=f"bn{i}", epsilon=1e-5)
        x = g.node("Relu", [x], name=f"relu{i}")
        if i < len(channels) - 1:
            x = g.node("MaxPool", [x], name=f"pool{i}", kernel_shape=[2, 2], strides=[2, 2])
        c_in = c_out
    x = g.node("GlobalAveragePool", [x], name="gap")
    x = g.node("Flatten", [x], name="flatten", axis=1)
    w = g.weight("head.weight", (classes, c_in), scale=(1.0 / c_in) ** 0.5)
    b = g.weight("head.bias", (classes,), scale=0.05)
    g.node("Gemm", [x, w, b], name="head", outputs=["logits"], transB=1)
    g.output("logits", FLOAT, ["batch", classes])
    return g.build(f"portarun built-in CNN ({image}x{image}, channels {list(channels)}), seed {seed}")
