"""Conformance cases: a model, the feeds to run it with, and where its reference comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import portarun
from portarun import Model, models


@dataclass
class Case:
    name: str
    load: Callable[[], Model]
    dims: dict[str, int] = field(default_factory=dict)
    reference: str = "reference:cpu"  # small cases: the onnx reference evaluator
    seed: int = 0
    tokens_axis: str | None = None  # symbolic dim counted as tokens (tokens/s), e.g. "seq"

    def feeds(self, model: Model) -> dict[str, np.ndarray]:
        return portarun.random_feeds(model.inputs, seed=self.seed, dims=self.dims)


def builtin_cases() -> list[Case]:
    cases = []
    for name in models.names(kind="model"):
        entry = models.get(name)
        cases.append(Case(name=f"builtin:{name}", load=lambda n=name: models.build(n), dims=dict(entry.default_dims),
                          tokens_axis="seq" if "seq" in entry.default_dims else None))
    return cases
