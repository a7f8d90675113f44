"""Output tails: ask ``Executable.run`` for only the end of an output along one axis.

A decoder with a preallocated (static) KV cache outputs each ``present`` as
``Concat(all cache slots, new entries)``, and the generate loop keeps only the new
entries. Asking for ``tails={"present.0.key": (2, capacity)}`` says so: every backend
returns ``present[:, :, capacity:]``, and a backend that compiles the request into its
program (XLA) never writes the rest, since slice(concat(past, new)) folds to ``new``.
Like ORT's ``output_names``, it narrows what comes back; it never changes the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import UsageError
from .types import TensorSpec

Tails = dict[str, tuple[int, int]]


def check_tails(outputs: tuple[TensorSpec, ...], tails: Any, *, where: str) -> Tails:
    """``tails`` as {output name: (axis, start)} with non-negative axis and start, or a UsageError."""
    if not isinstance(tails, Mapping):
        raise UsageError(f"{where}: tails must map output names to (axis, start), got {type(tails).__name__}")
    specs = {spec.name: spec for spec in outputs}
    checked: Tails = {}
    for name, request in tails.items():
        if name not in specs:
            raise UsageError(f"{where}: tails names '{name}', which is not an output",
                             hint=f"outputs: {', '.join(specs) or 'none'}")
        if not (isinstance(request, (tuple, list)) and len(request) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in request)):
            raise UsageError(f"{where}: the tail of '{name}' must be (axis, start) integers, got {request!r}")
        axis, start = int(request[0]), int(request[1])
        rank = None if specs[name].shape is None else len(specs[name].shape)
        if axis < 0 and rank is not None:
            axis += rank
        if start < 0:
            raise UsageError(f"{where}: the tail of '{name}' asks axis {request[0]} from {request[1]}, a start "
                             "before the output's beginning", hint="start >= 0 (0 is the whole output)")
        if axis < 0 or (rank is not None and axis >= rank):
            raise UsageError(f"{where}: the tail of '{name}' asks axis {request[0]} from {request[1]}, but the "
                             f"output has rank {rank if rank is not None else 'unknown'}",
                             hint="axis within the output's rank (negative counts from the end when the rank "
                                  "is declared)")
        checked[name] = (axis, start)
    return checked


def take_tail(name: str, value: Any, axis: int, start: int, *, where: str) -> Any:
    """``value[..., start:, ...]`` along ``axis``: a numpy view on the host, a slice inside XLA's trace."""
    ndim = getattr(value, "ndim", None)
    if ndim is None:
        raise UsageError(f"{where}: output '{name}' is not a tensor, so it has no tail",
                         hint="ask tails only of tensor outputs")
    if axis >= ndim:
        raise UsageError(f"{where}: the tail of '{name}' asks axis {axis}, but the output has rank {ndim}")
    return value[(slice(None),) * axis + (slice(start, None),)]


def host_tails(outputs: dict[str, Any], tails: Tails, *, where: str) -> dict[str, Any]:
    """Every requested tail cut on the host from full outputs (the default for a backend)."""
    result = dict(outputs)
    for name, (axis, start) in tails.items():
        result[name] = take_tail(name, result[name], axis, start, where=where)
    return result


__all__ = ["Tails", "check_tails", "host_tails", "take_tail"]
