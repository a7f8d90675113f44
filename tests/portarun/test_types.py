import numpy as np
import pytest

from portarun import InputError, InvalidPrecisionError, InvalidTargetError, Precision, Target, TensorSpec


@pytest.mark.parametrize("text, expected", [
    ("onnxruntime", Target("onnxruntime")),
    ("onnxruntime:cpu", Target("onnxruntime", "cpu")),
    ("tensorrt:cuda:1", Target("tensorrt", "cuda", 1)),
    ("XLA:GPU", Target("xla", "gpu")),
    (" openvino:auto ", Target("openvino", "auto")),
])
def test_target_parse(text, expected):
    assert Target.parse(text) == expected
    assert Target.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", ":cpu", "onnxruntime::0", "onnx runtime", "ort:cpu:x", "a:b:1:2", "1ort"])
def test_target_parse_rejects(text):
    with pytest.raises(InvalidTargetError) as info:
        Target.parse(text)
    assert "backend[:device[:index]]" in str(info.value)


def test_precision_parse_and_aliases():
    assert Precision.parse("FP32") is Precision.FP32
    assert Precision.parse("float16") is Precision.FP16
    assert Precision.parse("int4") is Precision.INT4_WEIGHT
    assert Precision.parse("int8_weight") is Precision.INT8_WEIGHT
    assert Precision.INT8.is_quantized and not Precision.BF16.is_quantized
    assert [p.value for p in Precision if p.is_weight_only] == ["int8-weight", "int4-weight"]  # float activations


def test_precision_did_you_mean():
    with pytest.raises(InvalidPrecisionError, match="did you mean 'fp16'"):
        Precision.parse("fp61")
    with pytest.raises(InvalidPrecisionError, match="choose one of"):
        Precision.parse("quantum")


def test_tensor_spec_check():
    spec = TensorSpec("x", "float32", ("batch", 3))
    bound = {}
    spec.check(np.zeros((2, 3), np.float32), bound)
    assert bound["batch"][0] == 2
    with pytest.raises(InputError, match="expected dtype float32, got float64"):
        spec.check(np.zeros((2, 3)), {})
    with pytest.raises(InputError, match="expected rank 2"):
        spec.check(np.zeros((3,), np.float32), {})
    with pytest.raises(InputError, match="dim 1 must be 3, got 4"):
        spec.check(np.zeros((2, 4), np.float32), {})
    other = TensorSpec("y", "float32", ("batch",))
    with pytest.raises(InputError, match="'batch' is 5, but input 'x' gave 'batch' = 2"):
        other.check(np.zeros((5,), np.float32), bound)


def test_tensor_spec_bfloat16_and_round_trip():
    spec = TensorSpec("w", "bfloat16", (None, "n"))
    assert spec.dtype.name == "bfloat16"
    assert TensorSpec.from_dict(spec.to_dict()) == spec
    assert spec.shape_text() == "[?, n]" and spec.is_dynamic
