"""Feeds for a signature: random (seeded) or from .npy/.npz files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import InputError
from .types import TensorSpec

# Sizes used for symbolic dims nobody specified. Named after what exporters call them.
DEFAULT_DIMS = {"batch": 1, "batch_size": 1, "n": 1, "seq": 16, "sequence": 16, "sequence_length": 16,
                "seq_len": 16, "past_sequence_length": 0, "past_seq": 0, "past_len": 0}


def concrete_shape(spec: TensorSpec, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
    if spec.shape is None:
        raise InputError(f"input '{spec.name}' has an unknown rank; pass it explicitly",
                         hint="use --input NAME=FILE.npy")
    dims = dict(dims or {})
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif isinstance(dim, str):
            shape.append(int(dims.get(dim, DEFAULT_DIMS.get(dim, 1))))
        else:
            shape.append(int(dims.get(f"{spec.name}:{axis}", 1)))
    return tuple(shape)


def random_feeds(specs: Iterable[TensorSpec], *, seed: int = 0, dims: Mapping[str, int] | None = None,
                 int_high: int | Mapping[str, int] = 10) -> dict[str, np.ndarray]:
    """Seeded random feeds: floats ~ N(0, 1), ints in [0, int_high), bools uniform."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, dims)
        kind = spec.dtype.kind
        if kind == "f" or spec.dtype.name == "bfloat16":
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32).astype(spec.dtype)
        elif kind in "iu":
            high = int_high.get(spec.name, 10) if isinstance(int_high, Mapping) else int_high
            feeds[spec.name] = rng.integers(0, max(high, 1), size=shape).astype(spec.dtype)
        elif kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InputError(f"cannot generate random data for input '{spec.name}' of type {spec.dtype}",
                             hint="pass it from a file with --input NAME=FILE.npy")
    return feeds


def load_feed_files(inputs: Mapping[str, str | os.PathLike] | None = None,
                    npz: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Feeds from ``NAME -> file.npy`` pairs and/or one ``.npz`` (names are its keys)."""
    feeds: dict[str, np.ndarray] = {}
    if npz is not None:
        path = Path(npz)
        if not path.is_file():
            raise InputError(f"inputs file '{path}' does not exist")
        try:
            with np.load(path, allow_pickle=False) as archive:
                feeds.update({key: archive[key] for key in archive.files})
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read '{path}' as .npz: {exc}") from None
    for name, file in (inputs or {}).items():
        path = Path(file)
        if not path.is_file():
            raise InputError(f"input '{name}': file '{path}' does not exist")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"input '{name}': cannot read '{path}' as .npy: {exc}") from None
    return feeds
