"""portarun.compile(float_model, target, precision="int8") quantizes first and says so."""

import numpy as np
import pytest

import portarun
from portarun.backend import Backend
from portarun.errors import UnsupportedError
from portarun.registry import default_registry
from portarun.types import Device, Precision


@pytest.mark.parametrize("target", ["onnxruntime:cpu", "reference"])
def test_float_model_at_a_quantized_precision_is_quantized_first(target, builtin_feeds):
    exe = portarun.compile("builtin:mlp", target, "int8-weight")
    note = exe.provenance.details["quantized_by_portarun"]
    assert note["precision"] == "int8-weight" and note["floor_met"] and note["weight_ratio"] < 0.28
    assert exe.precision is Precision.INT8_WEIGHT
    out = exe.run(builtin_feeds("mlp"))["logits"]
    ref = portarun.compile("builtin:mlp", "onnxruntime:cpu").run(builtin_feeds("mlp"))["logits"]
    assert np.dot(out.ravel(), ref.ravel()) / np.linalg.norm(out) / np.linalg.norm(ref) > 0.999


def test_already_quantized_model_compiles_without_requantizing():
    q = portarun.quantize("builtin:mlp", "int4-weight")
    exe = portarun.compile(q.model, "onnxruntime:cpu", "int4-weight")
    assert "quantized_by_portarun" not in exe.provenance.details


class _FloatOnly(Backend):
    name = "floatonly"
    precisions = (Precision.FP32,)

    def sdk_version(self):
        return "0"

    def devices(self):
        return [Device(self.name, "cpu")]

    def _compile(self, model, target, precision, options):  # pragma: no cover - never reached
        raise AssertionError("compile must be refused before quantizing")


def test_unsupported_precision_fails_before_quantizing():
    default_registry.register("floatonly", _FloatOnly)
    try:
        with pytest.raises(UnsupportedError, match="floatonly does not support precision int8"):
            portarun.compile("builtin:mlp", "floatonly", "int8")
    finally:
        default_registry.unregister("floatonly")
