"""Dynamic batching: run many requests' feeds as one call when the signature allows it.

Requests are stacked along axis 0 only when that axis is a batch axis: every input and
every output starts with the same symbolic dim (``batch``). Requests whose other dims
differ go in separate groups. A group whose batched run fails is rerun request by request,
so one bad request (say, an index out of range) fails alone and its neighbours still answer.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..types import TensorSpec


def batch_dim(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
    """The symbolic name of a leading batch dim shared by every input and output, else None."""
    firsts = {spec.shape[0] if spec.shape else None for spec in (*inputs, *outputs)}
    if len(firsts) == 1:
        (first,) = firsts
        if isinstance(first, str):
            return first
    return None


def _group_key(feeds: dict[str, np.ndarray]) -> tuple:
    return tuple(sorted((name, array.shape[1:], array.dtype.str) for name, array in feeds.items()))


def run_batched(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], requests: Sequence[dict[str, np.ndarray]],
                *, stackable: bool) -> list[Any]:
    """Run ``requests`` (checked feeds); per request: (its outputs dict or the exception it raised,
    how many requests shared the run that answered it)."""
    results: list[Any] = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for index, feeds in enumerate(requests):
        key = _group_key(feeds) if stackable else (index,)
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        if len(members) > 1:
            try:
                stacked = {name: np.concatenate([requests[i][name] for i in members]) for name in requests[members[0]]}
                outputs = run(stacked)
            except Exception:  # find which request fails: rerun them one by one below
                pass
            else:
                sizes = np.cumsum([len(next(iter(requests[i].values()))) for i in members])[:-1]
                split = {name: np.split(array, sizes) for name, array in outputs.items()}
                for position, index in enumerate(members):
                    results[index] = ({name: parts[position] for name, parts in split.items()}, len(members))
                continue
        for index in members:
            try:
                results[index] = (run(requests[index]), 1)
            except Exception as exc:
                results[index] = (exc, 1)
    return results
