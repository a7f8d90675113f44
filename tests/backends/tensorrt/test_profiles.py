"""Optimization profiles: derived from symbolic dims, parsed from options, enforced before TensorRT runs."""

from __future__ import annotations

import numpy as np
import pytest

from portarun import models
from portarun.errors import InputError, UsageError
from portarun.types import TensorSpec
from portarun_backends.tensorrt.profiles import (
    DEFAULT_DIM_RANGE,
    ShapeRange,
    check_in_profile,
    derive_profile,
    parse_dim_ranges,
    parse_shapes,
    profile_from_dict,
    profile_to_dict,
)

IMAGE = TensorSpec("image", "float32", ("batch", 3, 32, 32))
TOKENS = TensorSpec("ids", "int64", ("batch", "seq"))
MASK = TensorSpec("mask", "int64", ("batch", "seq"))


def test_symbolic_dims_get_the_documented_default_and_fixed_dims_stay_fixed():
    profile = derive_profile((IMAGE,))
    lo, mid, hi = DEFAULT_DIM_RANGE
    assert profile["image"].min == (lo, 3, 32, 32)
    assert profile["image"].opt == (mid, 3, 32, 32)
    assert profile["image"].max == (hi, 3, 32, 32)
    assert profile["image"].dim_names == ("batch", None, None, None)


def test_builtin_transformer_profile_covers_its_default_dims():
    model = models.build("transformer")
    profile = derive_profile(model.inputs)
    (name, rng), = profile.items()
    assert name == "x" and rng.max[-1] == rng.min[-1] == 256  # the hidden size is fixed
    check_in_profile(profile, {"x": np.zeros((1, 128, 256), np.float32)})  # the built-in's default dims fit


def test_dim_ranges_apply_to_every_input_sharing_the_dim_name():
    profile = derive_profile((TOKENS, MASK), dim_ranges={"batch": [1, 4, 8], "seq": [1, 128, 512]})
    for name in ("ids", "mask"):
        assert profile[name].min == (1, 1)
        assert profile[name].opt == (4, 128)
        assert profile[name].max == (8, 512)


def test_dim_ranges_text_form_from_the_cli():
    assert parse_dim_ranges("batch:1,8,32;seq:1,128,512") == {"batch": (1, 8, 32), "seq": (1, 128, 512)}


def test_explicit_shapes_win_over_dim_ranges_per_input():
    profile = derive_profile((TOKENS, MASK), shapes={"ids": [[2, 16], [2, 64], [2, 128]]},
                             dim_ranges={"batch": [1, 1, 4]})
    assert profile["ids"] == ShapeRange((2, 16), (2, 64), (2, 128), ("batch", "seq"))
    assert profile["mask"].max == (4, DEFAULT_DIM_RANGE[2])


def test_shapes_text_form_and_input_names_with_colons():
    parsed = parse_shapes("input:0:1x3x224x224,8x3x224x224,32x3x224x224;y:1x4")
    assert parsed["input:0"] == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert parsed["y"] == ((1, 4), (1, 4), (1, 4))  # one shape: a static profile


@pytest.mark.parametrize("shapes, words", [
    ({"nope": [[1, 3, 32, 32]] * 3}, "unknown input"),
    ({"image": [[1, 3, 32, 32], [4, 3, 32, 32]]}, "min, opt and max"),
    ({"image": [[1, 3, 32, 32], [4, 3, 32, 32], [2, 3, 32, 32]]}, "min <= opt <= max"),
    ({"image": [[1, 3, 32], [1, 3, 32], [1, 3, 32]]}, "rank 3"),
    ({"image": [[1, 4, 32, 32]] * 3}, "fixes it to 3"),
    ("image:1x3xAx32", "cannot read shape"),
])
def test_bad_shapes_are_usage_errors_naming_the_problem(shapes, words):
    with pytest.raises(UsageError, match=words):
        derive_profile((IMAGE,), shapes=shapes)


def test_dim_ranges_for_a_dim_no_input_has_is_an_error_listing_the_real_ones():
    with pytest.raises(UsageError, match="no input has") as info:
        derive_profile((IMAGE,), dim_ranges={"sequence": [1, 2, 3]})
    assert "batch" in info.value.hint


def test_unknown_rank_needs_explicit_shapes():
    spec = TensorSpec("x", "float32", None)
    with pytest.raises(UsageError, match="unknown rank"):
        derive_profile((spec,))
    assert derive_profile((spec,), shapes={"x": [[1, 2], [1, 2], [1, 2]]})["x"].max == (1, 2)


def test_a_run_outside_the_profile_is_an_input_error_naming_dim_and_fix():
    profile = derive_profile((IMAGE,), dim_ranges={"batch": [1, 8, 32]})
    check_in_profile(profile, {"image": np.zeros((32, 3, 32, 32), np.float32)})
    with pytest.raises(InputError) as info:
        check_in_profile(profile, {"image": np.zeros((33, 3, 32, 32), np.float32)})
    text = str(info.value)
    assert "dim 0 ('batch') is 33" in text and "[1, 32]" in text
    assert "dim_ranges=batch:1,8,33" in info.value.hint


def test_profile_round_trips_through_the_manifest_form():
    profile = derive_profile((TOKENS,), dim_ranges={"batch": [1, 2, 4]})
    again = profile_from_dict(profile_to_dict(profile))
    assert again["ids"].min == profile["ids"].min and again["ids"].max == profile["ids"].max


def test_apply_profile_calls_set_shape_once_per_input():
    calls = []

    class FakeProfile:
        def set_shape(self, name, lo, mid, hi):
            calls.append((name, lo, mid, hi))

    class FakeBuilder:
        def create_optimization_profile(self):
            return FakeProfile()

    class FakeConfig:
        def add_optimization_profile(self, profile):
            calls.append(("added", type(profile).__name__))

    from portarun_backends.tensorrt.profiles import apply_profile

    apply_profile(FakeBuilder(), FakeConfig(), derive_profile((TOKENS, MASK), dim_ranges={"batch": [1, 2, 4],
                                                                                          "seq": [1, 8, 16]}))
    assert calls == [("ids", (1, 1), (2, 8), (4, 16)), ("mask", (1, 1), (2, 8), (4, 16)), ("added", "FakeProfile")]
