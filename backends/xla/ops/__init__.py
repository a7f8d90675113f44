"""ONNX op lowerings for the XLA backend, one module per op family.

Laid out like onnx's reference evaluator: every op is one small function,
registered by (domain, op type, since-opset) with the ``op`` decorator.  The
lowering picks, for a model's opset, the newest registration whose
``since`` is not above it.  Adding an op means adding one function to the
family's module (and the module to ``FAMILIES`` if it is new).

Op functions take ``(n, *inputs)``: ``n`` is the node context (attributes,
opset, output count, the lowering context) and inputs are numpy arrays when
their value is known while tracing, JAX arrays otherwise, or None for an
omitted optional input.  They return one value or a tuple of values.

An op with no registration here whose ONNX schema defines a function body
(Attention, RotaryEmbedding, SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss,
...) is lowered through that body, expanded per call from the actual input
types (``lower.call_schema_function``); register a function here to replace
the expansion with a direct lowering.

This package imports nothing heavy: the families (which import JAX) load on
``load()``, called by the backend when it compiles.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from portarun.plugin import onnx_domain

FAMILIES = (
    "elementwise", "logical", "math", "reduce", "shape", "tensor", "nn", "norm", "pool", "conv",
    "control", "sequence", "quant", "rnn", "signal", "misc", "image", "detection",
)


@dataclass(frozen=True)
class OpDef:
    domain: str
    op_type: str
    since: int
    fn: Callable
    # False for ops whose result must not be computed while tracing even when every
    # input is known (random numbers), or that handle constant inputs themselves.
    fold: bool = True


_OPS: dict[tuple[str, str], list[OpDef]] = {}
_loaded = False


def op(*op_types: str, since: int = 1, domain: str = "", fold: bool = True) -> Callable:
    """Register the decorated function for ``op_types`` from opset ``since`` on."""

    def register(fn: Callable) -> Callable:
        for op_type in op_types:
            defs = _OPS.setdefault((domain, op_type), [])
            defs.append(OpDef(domain, op_type, since, fn, fold))
            defs.sort(key=lambda d: d.since)
        return fn

    return register


def load() -> None:
    """Import every op family (imports JAX)."""
    global _loaded
    if not _loaded:
        for family in FAMILIES:
            importlib.import_module(f"{__name__}.{family}")
        _loaded = True


def lookup(domain: str, op_type: str, version: int) -> OpDef | None:
    """The registration for ``op_type`` valid at opset ``version``, or None."""
    load()
    domain = onnx_domain(domain)
    best = None
    for definition in _OPS.get((domain, op_type), ()):
        if definition.since <= version:
            best = definition
    return best


def registered() -> dict[tuple[str, str], list[int]]:
    """(domain, op type) -> the since-versions registered, for listings and tests."""
    load()
    return {key: [d.since for d in defs] for key, defs in sorted(_OPS.items())}


__all__ = ["FAMILIES", "OpDef", "load", "lookup", "op", "registered"]
