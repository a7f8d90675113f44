"""The eval set a plan measures accuracy on: random feeds by default, or the user's FEEDS.npz (+ LABELS.npy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..feeds import random_feeds

DEFAULT_SAMPLES = 8


@dataclass
class EvalSet:
    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str  # "random (N samples, seed S)" or the file names

    @property
    def samples(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0]) if self.feeds else 0


def random_eval(inputs: Any, *, samples: int = DEFAULT_SAMPLES, seed: int = 0, dims: dict[str, int] | None = None,
                batch_axis: str = "batch") -> EvalSet:
    """``samples`` random inputs stacked on the batch axis (seed + 2: neither calibration nor timing feeds)."""
    sizes = {**(dims or {}), batch_axis: samples}
    return EvalSet(random_feeds(inputs, seed=seed + 2, dims=sizes), None, f"random ({samples} samples, seed {seed + 2})")


def load_eval(feeds_path: str | Path, labels_path: str | Path | None = None) -> EvalSet:
    """Feeds from an .npz (one array per input name, samples on axis 0); labels from an .npy."""
    try:
        with np.load(feeds_path) as data:
            feeds = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read eval feeds '{feeds_path}': {exc}",
                         hint="save them with numpy.savez(path, **{input_name: array})") from None
    labels = None
    if labels_path is not None:
        try:
            labels = np.load(labels_path)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read labels '{labels_path}': {exc}", hint="save them with numpy.save") from None
        count = next(iter(feeds.values())).shape[0] if feeds else 0
        if labels.shape[0] != count:
            raise InputError(f"labels '{labels_path}' has {labels.shape[0]} entries but the feeds have {count} samples",
                             hint="one label (class id, or token ids for a decoder) per eval sample")
    source = str(feeds_path) + (f" + labels {labels_path}" if labels_path else "")
    return EvalSet(feeds, labels, source)


def sample(eval_set: EvalSet, index: int) -> dict[str, np.ndarray]:
    """One eval sample as a batch-1 feed."""
    return {name: array[index:index + 1] for name, array in eval_set.feeds.items()}


__all__ = ["DEFAULT_SAMPLES", "EvalSet", "load_eval", "random_eval", "sample"]
