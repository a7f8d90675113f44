"""Feeds for a model: seeded random data that the graph accepts, or arrays from .npy/.npz files.

Random feeds read the graph when they get a ``Model`` (see ``input_roles``): token ids stay inside
the embedding table they index, masks are 0/1 with at least one 1 per row, position ids count up.
Symbolic dims get their size from ``dims`` (``--dim``), else from the model (a position table caps
a sequence), else a small default by name; ``feed_plan(...).describe()`` says which and why.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import InputError
from .input_roles import InputRole, input_roles, role_of
from .types import TensorSpec

# Sizes used for symbolic dims nobody specified. Named after what exporters call them.
DEFAULT_DIMS = {"batch": 1, "batch_size": 1, "n": 1, "seq": 16, "sequence": 16, "sequence_length": 16,
                "seq_len": 16, "past_sequence_length": 0, "past_seq": 0, "past_len": 0}
SEQUENCE_DEFAULT = 16
SPATIAL_DEFAULT = 64  # unnamed H/W of an image input: big enough for a few stride-2 stages
# One generated feed may not exceed this many bytes (a dim of 10**12 is a typo, not a request).
MAX_FEED_BYTES = 2 * 2**30
UNBOUNDED_INT_HIGH = 10
FEEDS_HINT = "pass real data: --inputs FILE.npz (one array per input) or --input NAME=FILE.npy"


def dim_key(spec: TensorSpec, axis: int) -> str | None:
    """The name ``--dim`` uses for a dim: its symbolic name, or ``input:axis`` when unnamed; None if fixed."""
    dim = spec.shape[axis] if spec.shape is not None else None
    if isinstance(dim, int):
        return None
    return dim if isinstance(dim, str) else f"{spec.name}:{axis}"


def symbolic_dims(specs: Iterable[TensorSpec]) -> dict[str, list[tuple[str, int]]]:
    """Every dim a user may size, with the (input, axis) places it appears."""
    found: dict[str, list[tuple[str, int]]] = {}
    for spec in specs:
        for axis in range(len(spec.shape or ())):
            key = dim_key(spec, axis)
            if key is not None:
                found.setdefault(key, []).append((spec.name, axis))
    return found


def _may_be_empty(name: str) -> bool:
    return "past" in name.lower()  # an empty KV cache (past length 0) is the prefill case


def check_dim_size(name: str, size: Any) -> int:
    """A dim size as an int >= 1 (>= 0 for a past length), else InputError."""
    try:
        value = int(size)
        if value != size and not isinstance(size, str):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"dim '{name}' must be a whole number, got {size!r}", hint=f"--dim {name}=SIZE") from None
    if value < 0 or (value == 0 and not _may_be_empty(name)):
        raise InputError(f"dim '{name}' must be positive, got {value}",
                         hint=f"--dim {name}=SIZE with SIZE >= 1" + (" (0 only for past lengths)" if value == 0 else ""))
    return value


def validate_dims(specs: Iterable[TensorSpec], dims: Mapping[str, Any] | None) -> dict[str, int]:
    """``dims`` checked against the model's symbolic dims: an unknown name or a bad size is an InputError."""
    specs = tuple(specs)
    known = symbolic_dims(specs)
    checked = {}
    for name, size in (dims or {}).items():
        if name not in known:
            listed = ", ".join(known) if known else "none (every input has a fixed shape)"
            raise InputError(f"--dim {name}: the model has no symbolic dim '{name}'; its symbolic dims are: {listed}",
                             hint="name a dim from `portarun inspect MODEL`; unnamed dims are INPUT:AXIS")
        checked[name] = check_dim_size(name, size)
    return checked


@dataclass(frozen=True)
class DimChoice:
    size: int
    source: str  # "given" (--dim), "model" (a hint in the graph), "default"
    why: str = ""


def _default_size(key: str, spec: TensorSpec, axis: int) -> tuple[int, str]:
    name = key.lower()
    if key in DEFAULT_DIMS:
        return DEFAULT_DIMS[key], "default for its name"
    if "past" in name:
        return 0, "an empty past (prefill)"
    if "batch" in name:
        return 1, "default batch"
    if any(word in name for word in ("seq", "len", "token", "time", "frames")):
        return SEQUENCE_DEFAULT, "default sequence length"
    if any(word == name or name.endswith(word) for word in ("height", "width", "h", "w")) or (
            len(spec.shape or ()) == 4 and axis >= 2 and spec.dtype.kind in "fu"):
        return SPATIAL_DEFAULT, "default image size"
    return 1, "default"


def resolve_dims(specs: Iterable[TensorSpec], dims: Mapping[str, Any] | None = None,
                 roles: Mapping[str, InputRole] | None = None) -> dict[str, DimChoice]:
    """A size for every symbolic dim: given, else the model's hint, else a default."""
    specs = tuple(specs)
    given = dict(dims or {})
    choices: dict[str, DimChoice] = {}
    for spec in specs:
        for axis in range(len(spec.shape or ())):
            key = dim_key(spec, axis)
            if key is None or key in choices:
                continue
            if key in given:
                choices[key] = DimChoice(check_dim_size(key, given[key]), "given")
                continue
            size, why = _default_size(key, spec, axis)
            role = (roles or {}).get(spec.name)
            if role is not None and role.kind == "position" and role.high is not None and axis == len(spec.shape) - 1 \
                    and size > role.high:
                choices[key] = DimChoice(int(role.high), "model", f"'{spec.name}' indexes a table of {int(role.high)} positions")
                continue
            choices[key] = DimChoice(size, "default", why)
    return _derive_totals(choices, given)


def _derive_totals(choices: dict[str, DimChoice], given: Mapping[str, Any]) -> dict[str, DimChoice]:
    """A dim written as a sum (``past_sequence_length + 1``, as optimum writes) or named ``total_*``
    is the sum of its parts (past + new tokens) unless given, so a decoder's mask fits its cache."""
    def size_of(part: str) -> int | None:
        part = part.strip()
        if part.isdigit():
            return int(part)
        return choices[part].size if part in choices and "+" not in part else None

    for key in list(choices):
        if key in given:
            continue
        if "+" in key:
            parts = [size_of(p) for p in key.split("+")]
            if None not in parts:
                choices[key] = DimChoice(sum(parts), "model", f"the sum {key}")
        elif "total" in key.lower():
            past = [k for k in choices if "past" in k.lower() and "+" not in k]
            new = [k for k in choices if "seq" in k.lower() and "past" not in k.lower() and "total" not in k.lower()
                   and "+" not in k]
            if past and new:
                size = choices[past[0]].size + choices[new[0]].size
                choices[key] = DimChoice(size, "model", f"{past[0]} + {new[0]}")
    return choices


def _shape_of(spec: TensorSpec, sizes: Mapping[str, DimChoice]) -> tuple[int, ...]:
    if spec.shape is None:
        raise InputError(f"input '{spec.name}' has an unknown rank; random data cannot be made for it",
                         hint=FEEDS_HINT.replace("NAME", spec.name))
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            if dim < 0:
                raise InputError(f"input '{spec.name}' declares dim {axis} as {dim}", hint=FEEDS_HINT)
            shape.append(dim)
        else:
            shape.append(sizes[dim_key(spec, axis)].size)
    nbytes = math.prod(shape) * max(spec.dtype.itemsize, 1)
    if nbytes > MAX_FEED_BYTES:
        raise InputError(f"input '{spec.name}' of shape {shape} ({spec.dtype.name}) would take {nbytes:,} bytes, "
                         f"over the {MAX_FEED_BYTES:,}-byte limit for generated feeds",
                         hint="use smaller --dim sizes, or " + FEEDS_HINT)
    return tuple(shape)


@dataclass
class PlannedInput:
    spec: TensorSpec
    shape: tuple[int, ...]
    role: InputRole


@dataclass
class FeedPlan:
    """How random feeds for a model are made: a shape and a role per input, a size per dim."""

    inputs: list[PlannedInput]
    dims: dict[str, DimChoice]
    overrides: dict[str, int] = field(default_factory=dict)  # legacy int_high per input

    def generate(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        past = max((c.size for k, c in self.dims.items() if "past" in k.lower()), default=0)
        return {item.spec.name: _draw(rng, item, self.overrides.get(item.spec.name), past) for item in self.inputs}

    def unbounded(self) -> list[str]:
        """Integer inputs whose valid range nobody could infer: their values are a guess."""
        return [i.spec.name for i in self.inputs if not i.role.inferred and i.spec.name not in self.overrides]

    def describe(self) -> list[str]:
        """Lines for the CLI: each dim's size and where it came from, each input's role, each guess."""
        lines = []
        if self.dims:
            lines.append("dims: " + ", ".join(f"{k}={c.size} ({c.source}{': ' + c.why if c.why else ''})"
                                              for k, c in self.dims.items()))
        for item in self.inputs:
            role = item.role
            span = ""
            if role.kind == "choice":
                span = " of {" + ", ".join(map(str, role.choices)) + "}"
            elif role.kind in ("index", "mask", "int", "image") or item.spec.name in self.overrides \
                    or (role.kind == "position" and role.high is not None):
                high = self.overrides.get(item.spec.name, role.high if role.high is not None else UNBOUNDED_INT_HIGH)
                span = f" in [{int(role.low)}, {int(high)})"
            lines.append(f"input {item.spec.name} {item.spec.dtype.name}{list(item.shape)}: {role.kind}{span} - {role.reason}")
        for name in self.unbounded():
            lines.append(f"warning: input '{name}': no valid range could be inferred; random values in "
                         f"[0, {UNBOUNDED_INT_HIGH}) may not be meaningful; {FEEDS_HINT.replace('NAME', name)}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"dims": {k: {"size": c.size, "source": c.source, "why": c.why} for k, c in self.dims.items()},
                "inputs": [{"name": i.spec.name, "shape": list(i.shape), "kind": i.role.kind, "low": i.role.low,
                            "high": i.role.high, "reason": i.role.reason, "inferred": i.role.inferred}
                           for i in self.inputs]}


def _specs_and_roles(source: Any) -> tuple[tuple[TensorSpec, ...], dict[str, InputRole]]:
    if hasattr(source, "proto") and hasattr(source, "inputs"):  # a portarun.Model: read the graph
        return tuple(source.inputs), input_roles(source)
    if hasattr(source, "inputs") and hasattr(source, "model"):  # an Executable: its model's graph
        return tuple(source.inputs), input_roles(source.model)
    specs = tuple(source)
    return specs, {spec.name: role_of(spec) for spec in specs}


def feed_plan(source: Any, dims: Mapping[str, Any] | None = None, *, strict: bool = False,
              int_high: int | Mapping[str, int] | None = None) -> FeedPlan:
    """The plan for random feeds of ``source`` (a Model, an Executable, or TensorSpecs).

    ``strict`` validates ``dims`` against the model (unknown names are an InputError); ``int_high``
    forces an exclusive upper bound for integer inputs (one for all, or per input name).
    """
    specs, roles = _specs_and_roles(source)
    roles = {spec.name: roles.get(spec.name) or role_of(spec) for spec in specs}
    if strict:
        validate_dims(specs, dims)
    sizes = resolve_dims(specs, dims, roles)
    overrides: dict[str, int] = {}
    if isinstance(int_high, Mapping):
        overrides = {k: int(v) for k, v in int_high.items()}
    elif int_high is not None:
        overrides = {s.name: int(int_high) for s in specs if s.dtype.kind in "iu"
                     and roles[s.name].kind in ("int",)}
    return FeedPlan([PlannedInput(spec, _shape_of(spec, sizes), roles[spec.name]) for spec in specs], sizes, overrides)


def random_feeds(source: Any, *, seed: int = 0, dims: Mapping[str, Any] | None = None,
                 int_high: int | Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded random feeds. Given a Model, they respect its graph (see ``feed_plan``); given only
    TensorSpecs, names decide (masks 0/1, positions counting up, other ints in [0, 10))."""
    return feed_plan(source, dims, int_high=int_high).generate(seed)


def _draw(rng: np.random.Generator, item: PlannedInput, forced_high: int | None, past: int) -> np.ndarray:
    spec, shape, role = item.spec, item.shape, item.role
    dtype = spec.dtype
    if role.kind == "float":
        return rng.standard_normal(shape).astype(np.float32).astype(dtype)
    if role.kind == "image" and dtype.kind == "f":
        return rng.uniform(0, 255, size=shape).astype(np.float32).astype(dtype)
    if role.kind == "mask":
        return _mask(rng, shape).astype(dtype)
    if role.kind == "bool":
        return np.zeros(shape, bool) if role.high == 1 else rng.integers(0, 2, size=shape).astype(bool)
    if role.kind == "choice" and forced_high is None:
        return rng.choice(np.array(role.choices), size=shape).astype(dtype)
    if role.kind == "position" and forced_high is None:
        n = shape[-1] if shape else 1
        positions = np.arange(past, past + n) % int(role.high) if role.high else np.arange(past, past + n)
        return np.broadcast_to(positions, shape).astype(dtype).copy()
    if dtype.kind in "iu":
        high = forced_high if forced_high is not None else role.high if role.high is not None else UNBOUNDED_INT_HIGH
        high = min(int(high), int(np.iinfo(dtype).max) + 1)
        return rng.integers(int(role.low), max(high, int(role.low) + 1), size=shape).astype(dtype)
    raise InputError(f"cannot generate random data for input '{spec.name}' of type {dtype}",
                     hint=FEEDS_HINT.replace("NAME", spec.name))


def _mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Padding-style 0/1 masks: each row along the last axis is ones then zeros, with at least one 1."""
    if not shape or shape[-1] == 0:
        return np.ones(shape, np.int64)
    n = shape[-1]
    lengths = rng.integers(1, n + 1, size=shape[:-1])
    return (np.arange(n) < lengths[..., None]).astype(np.int64)


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
