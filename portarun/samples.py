"""The user's own data as feeds: files, folders, Python objects or text, checked against the model.

Every command that runs a model takes its feeds from here (``feeds_for``), so ``compare``,
``conformance``, ``bench``, ``quantize`` and ``plan`` accept the same sources as ``run``:

- ``FILE.npz``: one array per input name; an array with one more axis than the input is a stack of
  samples (axis 0); keys ``"<i>/<name>"`` hold sample ``i`` explicitly;
- ``NAME=FILE.npy`` pairs (``inputs``), the same way;
- a folder of ``.npz`` files, each one (or more) samples, in name order;
- a dict of arrays, or any iterable of dicts (Python);
- text with a tokenizer (see ``portarun.text_feeds``);
- nothing: seeded random feeds that respect the graph (``portarun.feeds``).

Each sample is validated with ``portarun.backend.check_feeds`` (the messages ``Executable.run``
gives), prefixed with the sample and where it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import check_feeds
from .errors import InputError, UsageError
from .feeds import feed_plan, load_feed_files
from .types import TensorSpec

Feeds = dict[str, np.ndarray]
INDEXED_KEY = re.compile(r"^(\d+)/(.+)$")


@dataclass
class FeedSet:
    """Samples checked against a model, where they came from, and lines worth printing."""

    samples: list[Feeds]
    origin: str  # "random", "file", "folder", "python", "text"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, index: int) -> Feeds:
        return self.samples[index]


def _specs(source: Any) -> tuple[TensorSpec, ...]:
    return tuple(source.inputs) if hasattr(source, "inputs") else tuple(source)


def split_samples(specs: tuple[TensorSpec, ...], arrays: Mapping[str, Any]) -> list[Feeds]:
    """One dict of arrays as samples: indexed keys (``"3/x"``), a leading sample axis, or one sample."""
    indexed: dict[int, Feeds] = {}
    plain: Feeds = {}
    for key, value in arrays.items():
        match = INDEXED_KEY.match(str(key))
        if match and match.group(2) in {s.name for s in specs}:
            indexed.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            plain[key] = value
    if indexed:
        if plain:
            raise InputError(f"mixes per-sample keys ('0/NAME') with plain keys ({', '.join(map(repr, plain))})",
                             hint="use either NAME (one sample, or a stack along axis 0) or I/NAME for every array")
        return [indexed[i] for i in sorted(indexed)]
    ranks = {s.name: len(s.shape) for s in specs if s.shape is not None}
    stacked = [name for name, value in plain.items() if name in ranks and np.ndim(value) == ranks[name] + 1]
    if stacked and len(stacked) == len([n for n in plain if n in ranks]):
        counts = {np.shape(plain[name])[0] for name in stacked}
        if len(counts) != 1:
            raise InputError("arrays stacked along a sample axis disagree on the number of samples: "
                             + ", ".join(f"{n}: {np.shape(plain[n])[0]}" for n in stacked),
                             hint="give every input the same number of samples along axis 0")
        (count,) = counts
        return [{name: (np.asarray(value)[i] if name in stacked else value) for name, value in plain.items()}
                for i in range(count)]
    return [plain]


def _from_path(specs: tuple[TensorSpec, ...], path: Path) -> tuple[list[Feeds], str]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise InputError(f"folder '{path}' holds no .npz samples",
                             hint="save one sample per file with numpy.savez(FILE, **{name: array})")
        samples: list[Feeds] = []
        for file in files:
            samples.extend(split_samples(specs, load_feed_files(npz=file)))
        return samples, "folder"
    if not path.exists():
        raise InputError(f"inputs file '{path}' does not exist", hint="check the path (an .npz file or a folder of them)")
    if path.suffix == ".npy":
        if len(specs) != 1:
            raise InputError(f"'{path}' is one array but the model has {len(specs)} inputs",
                             hint="use --input NAME=FILE.npy per input, or one .npz with every input")
        return split_samples(specs, load_feed_files({specs[0].name: path})), "file"
    if path.suffix != ".npz":
        raise InputError(f"inputs file '{path}' must be an .npz (arrays keyed by input name) or a folder of them")
    return split_samples(specs, load_feed_files(npz=path)), "file"


def load_samples(source: Any, data: Any = None, *, inputs: Mapping[str, str | os.PathLike] | None = None) -> FeedSet:
    """The samples in ``data`` (a path, a dict, or an iterable of dicts) plus ``NAME=FILE.npy`` ``inputs``,
    checked against ``source`` (a Model, an Executable or TensorSpecs)."""
    specs = _specs(source)
    if data is None and not inputs:
        raise UsageError("no feeds given", hint="pass an .npz file, a folder of .npz files, or a list of feed dicts")
    samples: list[Feeds] = []
    origin = "python"
    where = "python"
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        samples, origin = _from_path(specs, path)
        where = str(path)
    elif isinstance(data, Mapping):
        samples = split_samples(specs, dict(data))
    elif data is not None:
        if not isinstance(data, Iterable):
            raise InputError(f"cannot use a {type(data).__name__} as feeds",
                             hint="pass an .npz path, a folder, a dict of arrays, or an iterable of dicts")
        for index, item in enumerate(data):
            if not isinstance(item, Mapping):
                raise InputError(f"sample {index}: expected a dict of input name -> array, got {type(item).__name__}")
            samples.append(dict(item))
    if inputs:
        paired = split_samples(specs, load_feed_files(inputs))
        where = ", ".join(f"{k}={v}" for k, v in inputs.items()) if not samples else f"{where} + --input"
        origin = "file" if origin == "python" else origin
        if not samples:
            samples = paired
        elif len(paired) in (1, len(samples)):  # --input adds (or replaces) inputs in every sample
            samples = [{**s, **paired[0 if len(paired) == 1 else i]} for i, s in enumerate(samples)]
        else:
            raise InputError(f"--input gives {len(paired)} samples but the other data gives {len(samples)}")
    if not samples:
        raise InputError(f"no samples in {where}", hint="give at least one sample for every model input")
    checked = []
    for index, sample in enumerate(samples):
        try:
            checked.append(check_feeds(specs, sample))
        except InputError as exc:
            prefix = f"sample {index} of {where}" if len(samples) > 1 else f"feeds from {where}"
            raise InputError(f"{prefix}: {exc.message}", hint=exc.hint) from None
    return FeedSet(checked, origin, [f"feeds: {len(checked)} sample(s) from {where}"])


def refuse_dims_with_data(dims: Mapping[str, Any] | None, given: str) -> None:
    """``--dim`` sizes generated feeds only; with the user's data the shapes are the data's."""
    if dims:
        raise UsageError(f"--dim ({', '.join(dims)}) sizes random feeds, but feeds come from {given}",
                         hint="drop --dim: with your own data the shapes are your arrays' shapes")


def feeds_for(model: Any, *, data: Any = None, inputs: Mapping[str, str | os.PathLike] | None = None,
              texts: Iterable[str] | None = None, text_file: str | os.PathLike | None = None,
              tokenizer: str | os.PathLike | None = None, dims: Mapping[str, Any] | None = None,
              seed: int = 0, count: int = 1, max_length: int | None = None) -> FeedSet:
    """The feeds a command runs ``model`` with: the user's data, text through a tokenizer, or ``count``
    seeded random samples that respect the graph (``dims`` sizes their symbolic dims, validated)."""
    has_text = bool(texts) or text_file is not None
    if data is not None or inputs:
        if has_text:
            raise UsageError("give either --inputs/--input or --text/--text-file, not both")
        refuse_dims_with_data(dims, "your data")
        return load_samples(model, data, inputs=inputs)
    if has_text:
        from .text_feeds import text_samples

        refuse_dims_with_data(dims, "the text")
        return text_samples(model, texts=texts, text_file=text_file, tokenizer=tokenizer, max_length=max_length)
    if tokenizer is not None:
        raise UsageError("--tokenizer needs --text or --text-file")
    plan = feed_plan(model, dims, strict=True)
    samples = [plan.generate(seed + i) for i in range(max(int(count), 1))]
    return FeedSet(samples, "random", plan.describe())
