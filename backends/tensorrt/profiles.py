"""TensorRT optimization profiles: the min/opt/max shape of every input an engine accepts.

A TensorRT engine only runs shapes inside the profile it was built with. Profiles
come from the user or, for symbolic dims (``batch``, ``seq``), from documented
defaults, and every run is checked against them here, so a shape outside the
profile is a clear ``InputError`` instead of an opaque TensorRT failure.

Options (``compile(..., shapes=..., dim_ranges=...)`` or ``--option``):

- ``shapes``: per input, ``{"x": [[1,3,224,224], [8,3,224,224], [32,3,224,224]]}``,
  or the text ``x:1x3x224x224,8x3x224x224,32x3x224x224;y:...``.
- ``dim_ranges``: per symbolic dim name, ``{"batch": [1,8,32], "seq": [1,128,512]}``,
  or the text ``batch:1,8,32;seq:1,128,512``. Inputs sharing a dim name share its range.

A symbolic dim with neither gets ``DEFAULT_DIM_RANGE`` = min 1, opt 1, max 256:
tuned for batch-1 latency, accepting up to 256. Fixed dims are fixed in the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from portarun.plugin import InputError, TensorSpec, UsageError

DEFAULT_DIM_RANGE = (1, 1, 256)
BACKEND = "tensorrt"


@dataclass(frozen=True)
class ShapeRange:
    """The min, opt and max shape of one input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dim_names: tuple[str | None, ...] = ()  # symbolic name per axis, for messages

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise UsageError(f"{BACKEND}: min/opt/max shapes must have the same rank, got "
                             f"{list(self.min)}, {list(self.opt)}, {list(self.max)}")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not (0 <= lo <= mid <= hi):
                raise UsageError(f"{BACKEND}: profile shapes need 0 <= min <= opt <= max on every axis, got "
                                 f"min {list(self.min)}, opt {list(self.opt)}, max {list(self.max)}")

    def to_list(self) -> list[list[int]]:
        return [list(self.min), list(self.opt), list(self.max)]


Profile = dict[str, ShapeRange]  # input name -> range, in model input order


def _parse_dims_text(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().lower().split("x") if part.strip() != "")
    except ValueError:
        raise UsageError(f"{BACKEND}: cannot read shape '{text}' in {what}",
                         hint="write shapes as 1x3x224x224") from None


def parse_shapes(value: Any) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The ``shapes`` option as ``{input: (min, opt, max)}``; accepts a mapping or the CLI text form."""
    if value is None or value == "" or value == {}:
        return {}
    items: dict[str, Any]
    if isinstance(value, str):
        items = {}
        for part in value.split(";"):
            if not part.strip():
                continue
            name, sep, shapes = part.rpartition(":")
            if not sep or not name.strip():
                raise UsageError(f"{BACKEND}: cannot read shapes '{part}'",
                                 hint="write name:min,opt,max, e.g. x:1x3x224x224,8x3x224x224,32x3x224x224")
            items[name.strip()] = [_parse_dims_text(s, "shapes") for s in shapes.split(",")]
    elif isinstance(value, Mapping):
        items = dict(value)
    else:
        raise UsageError(f"{BACKEND}: option 'shapes' must be a mapping or text, got {type(value).__name__}")
    result = {}
    for name, triple in items.items():
        if isinstance(triple, str):
            triple = [_parse_dims_text(s, "shapes") for s in triple.split(",")]
        triple = list(triple)
        if len(triple) == 1:  # one shape: a static profile
            triple = triple * 3
        if len(triple) != 3:
            raise UsageError(f"{BACKEND}: shapes for input '{name}' need min, opt and max, got {len(triple)} shape(s)")
        try:
            lo, mid, hi = (tuple(int(d) for d in shape) for shape in triple)
        except (TypeError, ValueError):
            raise UsageError(f"{BACKEND}: shapes for input '{name}' must be lists of integers, got {triple}") from None
        result[str(name)] = (lo, mid, hi)
    return result


def parse_dim_ranges(value: Any) -> dict[str, tuple[int, int, int]]:
    """The ``dim_ranges`` option as ``{dim_name: (min, opt, max)}``; mapping or ``batch:1,8,32;seq:...``."""
    if value is None or value == "" or value == {}:
        return {}
    if isinstance(value, str):
        items = {}
        for part in value.split(";"):
            if not part.strip():
                continue
            name, sep, numbers = part.partition(":")
            if not sep or not name.strip():
                raise UsageError(f"{BACKEND}: cannot read dim range '{part}'", hint="write dim:min,opt,max, e.g. batch:1,8,32")
            items[name.strip()] = numbers.split(",")
    elif isinstance(value, Mapping):
        items = dict(value)
    else:
        raise UsageError(f"{BACKEND}: option 'dim_ranges' must be a mapping or text, got {type(value).__name__}")
    result = {}
    for name, numbers in items.items():
        try:
            values = [int(n) for n in numbers]
        except (TypeError, ValueError):
            raise UsageError(f"{BACKEND}: dim range for '{name}' must be integers min,opt,max, got {numbers}") from None
        if len(values) != 3 or not (0 <= values[0] <= values[1] <= values[2]):
            raise UsageError(f"{BACKEND}: dim range for '{name}' must be min,opt,max with min <= opt <= max, got {values}")
        result[str(name)] = (values[0], values[1], values[2])
    return result


def derive_profile(inputs: tuple[TensorSpec, ...], shapes: Any = None, dim_ranges: Any = None) -> Profile:
    """One optimization profile for ``inputs``: user shapes first, then dim ranges, then the defaults."""
    explicit = parse_shapes(shapes)
    ranges = parse_dim_ranges(dim_ranges)
    names = {spec.name for spec in inputs}
    unknown = [n for n in explicit if n not in names]
    if unknown:
        raise UsageError(f"{BACKEND}: option 'shapes' names unknown input(s) {', '.join(unknown)}",
                         hint="inputs are: " + ", ".join(f"{s.name}{s.shape_text()}" for s in inputs))
    used_dims = {d for spec in inputs if spec.shape for d in spec.shape if isinstance(d, str)}
    unused = [n for n in ranges if n not in used_dims]
    if unused:
        raise UsageError(f"{BACKEND}: option 'dim_ranges' names dim(s) {', '.join(unused)} that no input has",
                         hint="symbolic dims are: " + (", ".join(sorted(used_dims)) or "none (all inputs are static)"))
    profile: Profile = {}
    for spec in inputs:
        if spec.name in explicit:
            lo, mid, hi = explicit[spec.name]
            if spec.shape is not None:
                _check_against_model(spec, lo, mid, hi)
            names_per_axis = tuple(d if isinstance(d, str) else None for d in (spec.shape or ()))
            profile[spec.name] = ShapeRange(lo, mid, hi, names_per_axis)
            continue
        if spec.shape is None:
            raise UsageError(f"{BACKEND}: input '{spec.name}' has unknown rank, so no profile can be derived",
                             hint=f"give its shapes: --option shapes={spec.name}:MINxDIMS,OPTxDIMS,MAXxDIMS")
        lo_dims, opt_dims, hi_dims = [], [], []
        for dim in spec.shape:
            if isinstance(dim, int):
                lo_dims.append(dim), opt_dims.append(dim), hi_dims.append(dim)
            else:
                lo, mid, hi = ranges.get(dim, DEFAULT_DIM_RANGE) if isinstance(dim, str) else DEFAULT_DIM_RANGE
                lo_dims.append(lo), opt_dims.append(mid), hi_dims.append(hi)
        profile[spec.name] = ShapeRange(tuple(lo_dims), tuple(opt_dims), tuple(hi_dims),
                                        tuple(d if isinstance(d, str) else None for d in spec.shape))
    return profile


def _check_against_model(spec: TensorSpec, *shapes: tuple[int, ...]) -> None:
    for shape in shapes:
        if len(shape) != len(spec.shape):
            raise UsageError(f"{BACKEND}: shapes for input '{spec.name}' have rank {len(shape)}, "
                             f"the model says {spec.shape_text()}")
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if isinstance(want, int) and want != got:
                raise UsageError(f"{BACKEND}: shapes for input '{spec.name}' give dim {axis} = {got}, "
                                 f"but the model fixes it to {want} ({spec.shape_text()})")


def profile_to_dict(profile: Profile) -> dict[str, list[list[int]]]:
    return {name: rng.to_list() for name, rng in profile.items()}


def profile_from_dict(data: Mapping[str, Any]) -> Profile:
    return {name: ShapeRange(*(tuple(int(d) for d in shape) for shape in triple)) for name, triple in data.items()}


def check_in_profile(profile: Profile, feeds: Mapping[str, np.ndarray]) -> None:
    """Raise InputError when a feed's shape lies outside the profile the engine was built for."""
    for name, rng in profile.items():
        if name not in feeds:
            continue
        shape = tuple(np.shape(feeds[name]))
        if len(shape) != len(rng.min):
            raise InputError(f"input '{name}': rank {len(shape)} {list(shape)}, but the TensorRT engine was "
                             f"built for rank {len(rng.min)} (min {list(rng.min)}, max {list(rng.max)})")
        for axis, (got, lo, hi) in enumerate(zip(shape, rng.min, rng.max)):
            if not lo <= got <= hi:
                dim_name = rng.dim_names[axis] if axis < len(rng.dim_names) else None
                label = f"dim {axis}" + (f" ('{dim_name}')" if dim_name else "")
                fix = (f"--option dim_ranges={dim_name}:{min(lo, got)},{rng.opt[axis]},{max(hi, got)}" if dim_name
                       else f"--option shapes={name}:...")
                raise InputError(
                    f"input '{name}': {label} is {got}, outside the TensorRT optimization profile "
                    f"[{lo}, {hi}] this engine was built for (min {list(rng.min)}, max {list(rng.max)})",
                    hint=f"recompile with a wider profile, e.g. {fix}")


def apply_profile(builder: Any, config: Any, profile: Profile) -> None:
    """Add ``profile`` to a TensorRT builder config (``IOptimizationProfile.set_shape``)."""
    optimization_profile = builder.create_optimization_profile()
    for name, rng in profile.items():
        optimization_profile.set_shape(name, rng.min, rng.opt, rng.max)
    config.add_optimization_profile(optimization_profile)
