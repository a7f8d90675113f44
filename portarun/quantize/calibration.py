"""Calibration data: where the samples come from, and how activation ranges are estimated.

A calibration set is a list of feed dicts, each checked against the model's
signature. Sources: an ``.npz`` file (arrays keyed by input name; split into
one sample per row when the input's first dim is symbolic), seeded random
feeds that respect dtypes and integer ranges (token ids stay inside the
vocabulary of the embedding they index), or any Python iterable of dicts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import check_feeds
from ..errors import InputError, UsageError
from ..feeds import UNBOUNDED_INT_HIGH, feed_plan, load_feed_files
from ..input_roles import input_roles
from ..model import Model

Feeds = dict[str, np.ndarray]
METHODS = ("minmax", "percentile", "entropy")


class RandomCalibration:
    """``count`` seeded random samples (``dims`` sizes symbolic dims, e.g. {"seq": 128})."""

    def __init__(self, count: int, *, seed: int = 0, dims: Mapping[str, int] | None = None):
        if count < 1:
            raise InputError(f"random calibration needs at least 1 sample, got {count}")
        self.count, self.seed, self.dims = int(count), int(seed), dict(dims or {})

    def samples(self, model: Model, *, offset: int = 0) -> list[Feeds]:
        # the feed plan reads the graph once (ids stay inside their embedding table, masks are 0/1); each
        # seed then draws what random_feeds(model, seed=...) draws (reading decoder-small's graph per sample
        # converted its 98 MB embedding table 48 times)
        plan = feed_plan(model, self.dims)
        return [plan.generate(self.seed + offset + i) for i in range(self.count)]

    def __repr__(self) -> str:
        return f"RandomCalibration({self.count}, seed={self.seed})"


def integer_ranges(model: Model) -> dict[str, int]:
    """Upper bound (exclusive) of each integer input's random values, as ``portarun.feeds`` infers it
    (the row count of the embedding a Gather indexes, a OneHot depth, 2 for masks and type ids)."""
    roles = input_roles(model)
    return {spec.name: int(roles[spec.name].high if roles[spec.name].high is not None else UNBOUNDED_INT_HIGH)
            for spec in model.inputs if spec.dtype.kind in "iu" and roles[spec.name].kind != "position"}


def _split_rows(model: Model, feeds: Feeds) -> list[Feeds]:
    """One sample per row when every input's first dim is symbolic and the row counts agree."""
    specs = {s.name: s for s in model.inputs}
    splittable = all(spec.shape and not isinstance(spec.shape[0], int) for spec in specs.values())
    rows = {np.asarray(feeds[name]).shape[0] if np.ndim(feeds[name]) else -1 for name in specs if name in feeds}
    if not splittable or len(rows) != 1 or -1 in rows:
        return [feeds]
    (count,) = rows
    return [{name: np.asarray(value)[i:i + 1] for name, value in feeds.items()} for i in range(count)]


def load_samples(model: Model, source: Any) -> list[Feeds]:
    """The calibration set for ``model`` from a path (.npz), RandomCalibration, dict, or iterable of dicts."""
    if source is None:
        raise UsageError("no calibration data given",
                         hint="pass an .npz file, portarun.quantize.RandomCalibration(N, seed=S), or a list of feed dicts")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():  # a folder of .npz samples, read as every command reads user data
            from ..samples import load_samples as load_user_samples

            return load_user_samples(model, path).samples
        if path.suffix != ".npz":
            raise InputError(f"calibration file '{path}' must be an .npz of arrays keyed by input name")
        samples = _split_rows(model, load_feed_files(npz=path))
    elif isinstance(source, RandomCalibration):
        samples = source.samples(model)
    elif isinstance(source, Mapping):
        samples = _split_rows(model, dict(source))
    elif isinstance(source, Iterable):
        samples = []
        for item in source:
            if not isinstance(item, Mapping):
                raise InputError(f"calibration items must be dicts of input name -> array, got {type(item).__name__}")
            samples.append(dict(item))
    else:
        raise InputError(f"cannot use a {type(source).__name__} as calibration data",
                         hint="pass an .npz path, RandomCalibration, a dict of arrays, or an iterable of dicts")
    if not samples or any(len(s) == 0 for s in samples):
        raise InputError("the calibration set is empty", hint="give at least one sample for every model input")
    checked = []
    for index, sample in enumerate(samples):
        try:
            checked.append(check_feeds(model.inputs, sample))
        except InputError as exc:
            raise InputError(f"calibration sample {index} does not match model '{model.name}': {exc.message}",
                             hint=exc.hint) from None
    return checked


MIN_HELD_OUT = 8  # a floor judged on fewer samples is a guess (2 held-out mlp samples said 0.9998; fresh ones 0.978)


def split_holdout(samples: list[Feeds]) -> tuple[list[Feeds], list[Feeds], bool]:
    """(calibration, validation, held_out): the last quarter is held out, but at least ``MIN_HELD_OUT``
    (or half, for small sets) so that the floor is judged on enough samples; nothing when there is one."""
    if len(samples) < 2:
        return samples, samples, False
    n_val = max(len(samples) // 4, min(MIN_HELD_OUT, len(samples) // 2))
    return samples[:-n_val], samples[-n_val:], True


# -- activation ranges --------------------------------------------------------------------
class RangeCollector:
    """Accumulates one tensor's values over the calibration set and turns them into a float range."""

    MAX_KEPT = 1 << 20  # values kept per tensor for percentile/entropy (strided subsample beyond)

    def __init__(self, method: str, percentile: float = 99.99):
        if method not in METHODS:
            raise UsageError(f"unknown calibration method '{method}'", hint=f"choose one of {', '.join(METHODS)}")
        self.method, self.percentile = method, percentile
        self.lo, self.hi = np.inf, -np.inf
        self.kept: list[np.ndarray] = []

    def add(self, array: np.ndarray) -> None:
        a = np.asarray(array, dtype=np.float32).ravel()
        if a.size == 0:
            return
        self.lo, self.hi = min(self.lo, float(a.min())), max(self.hi, float(a.max()))
        if self.method != "minmax":
            step = max(1, a.size // (self.MAX_KEPT // 8))
            part = a[::step]
            self.kept.append(part)

    def range(self) -> tuple[float, float]:
        if not np.isfinite(self.lo):
            return 0.0, 0.0
        if self.method == "minmax":
            return self.lo, self.hi
        values = np.concatenate(self.kept)
        if values.size > self.MAX_KEPT:
            values = values[:: values.size // self.MAX_KEPT + 1]
        if self.method == "percentile":
            lo = float(np.percentile(values, 100.0 - self.percentile)) if self.lo < 0 else 0.0
            return min(lo, 0.0), max(float(np.percentile(values, self.percentile)), 0.0)
        threshold = entropy_threshold(np.abs(values))
        return (-threshold if self.lo < 0 else 0.0), threshold


def entropy_threshold(magnitudes: np.ndarray, bins: int = 2048, levels: int = 128) -> float:
    """The clipping threshold minimizing KL(P || Q) between the |x| histogram and its quantized form
    (the TensorRT entropy calibrator's method)."""
    top = float(magnitudes.max()) if magnitudes.size else 0.0
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(magnitudes, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best_kl, best_i = np.inf, bins
    for i in range(levels, bins + 1, 16):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # outliers clip into the last bin
        # Q: the first i bins merged into ``levels`` groups, spread back over the non-empty bins
        groups = np.array_split(np.arange(i), levels)
        q = np.zeros(i)
        for idx in groups:
            nonzero = p[idx] > 0
            if nonzero.any():
                q[idx[nonzero]] = hist[idx].sum() / nonzero.sum()
        mask = p > 0
        q[mask & (q == 0)] = 1e-4  # smoothing: a bin Q cannot express still costs, but finitely
        ps, qs = p / p.sum(), q / q.sum()
        kl = float(np.sum(ps[mask] * np.log(ps[mask] / qs[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])
