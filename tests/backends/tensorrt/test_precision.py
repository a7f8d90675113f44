"""Precision -> network typing and builder flags, checked against a fake `trt` that records calls.

The fake stands in for the tensorrt module's enums and IBuilderConfig only, so these
tests check portarun's mapping; they say nothing about TensorRT itself.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

import pytest

from portarun.errors import UnsupportedError
from portarun.types import Precision
from portarun_backends.tensorrt.precision import apply_precision, network_flags, plan_precision


class BuilderFlag(enum.IntEnum):  # the members TensorRT 10 has that the mapping uses
    FP16 = 0
    INT8 = 1
    TF32 = 6
    BF16 = 17


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


def fake_trt(builder_flags=BuilderFlag):
    return SimpleNamespace(BuilderFlag=builder_flags, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag)


class RecordingConfig:
    def __init__(self):
        self.calls = []

    def set_flag(self, flag):
        self.calls.append(("set", flag.name))

    def clear_flag(self, flag):
        self.calls.append(("clear", flag.name))


def flags_for(precision, version="10.3.0", **kwargs):
    plan = plan_precision(precision, version, **kwargs)
    config = RecordingConfig()
    apply_precision(fake_trt(), config, plan)
    return plan, config.calls


def test_fp32_is_weakly_typed_and_clears_tf32():
    plan, calls = flags_for("fp32")
    assert not plan.strongly_typed
    assert calls == [("clear", "TF32")]
    assert network_flags(fake_trt(), plan) == 0


def test_fp32_with_tf32_allowed_touches_no_flag():
    _, calls = flags_for("fp32", tf32=True)
    assert calls == []


@pytest.mark.parametrize("precision, flag", [("fp16", "FP16"), ("bf16", "BF16")])
def test_half_precisions_set_their_flag_in_a_weakly_typed_network(precision, flag):
    plan, calls = flags_for(precision)
    assert not plan.strongly_typed
    assert ("set", flag) in calls and ("clear", "TF32") in calls
    assert not any(name == "INT8" for _, name in calls)


@pytest.mark.parametrize("precision", ["int8", "int8-weight", "int4-weight"])
def test_quantized_precisions_are_explicit_qdq_in_a_strongly_typed_network_without_precision_flags(precision):
    plan, calls = flags_for(precision)
    assert plan.strongly_typed
    assert network_flags(fake_trt(), plan) == 1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # No INT8 flag: that would be TensorRT's implicit (calibrator) quantization, deprecated since 10.1.
    assert all(action == "clear" for action, _ in calls)


def test_tensorrt_11_is_strongly_typed_converts_for_fp16_and_refuses_bf16():
    plan, _ = flags_for("fp32", version="11.4.0")
    assert plan.strongly_typed and plan.convert_to is None
    plan, calls = flags_for("fp16", version="11.4.0")
    assert plan.strongly_typed and plan.convert_to == "fp16"
    assert not any(action == "set" for action, _ in calls)  # the graph carries the type, no flag
    with pytest.raises(UnsupportedError, match="strongly typed networks only") as info:
        plan_precision(Precision.BF16, "11.4.0")
    assert "bf16" in info.value.hint


def test_tensorrt_older_than_10_is_refused():
    with pytest.raises(UnsupportedError, match="too old"):
        plan_precision("fp32", "8.6.1")


def test_a_flag_this_tensorrt_lacks_fails_instead_of_building_without_it():
    class OldFlags(enum.IntEnum):
        FP16 = 0
        TF32 = 6

    plan = plan_precision("bf16", "10.0.1")
    with pytest.raises(UnsupportedError, match="BuilderFlag.BF16"):
        apply_precision(fake_trt(OldFlags), RecordingConfig(), plan)


def test_a_flag_to_clear_that_does_not_exist_is_ignored():
    class NoTf32(enum.IntEnum):
        FP16 = 0

    config = RecordingConfig()
    apply_precision(fake_trt(NoTf32), config, plan_precision("fp16", "10.2.0"))
    assert config.calls == [("set", "FP16")]
