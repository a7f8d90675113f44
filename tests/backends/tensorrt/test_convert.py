"""The fp16 conversion used for TensorRT 11 keeps the signature and the numbers (checked on ONNX Runtime CPU)."""

from __future__ import annotations

import numpy as np
import onnx

import portarun
from portarun import models
from portarun_backends.tensorrt.convert import to_fp16


def test_fp16_conversion_keeps_fp32_io_and_stays_close():
    model = models.build("mlp")
    converted = to_fp16(model)
    assert [s.dtype for s in converted.inputs] == [s.dtype for s in model.inputs]
    assert [s.dtype for s in converted.outputs] == [s.dtype for s in model.outputs]
    weights = [t for t in converted.proto.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT,
                                                                              onnx.TensorProto.FLOAT16)]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    onnx.checker.check_model(converted.proto)  # includes producers-before-consumers order
    feeds = portarun.random_feeds(model.inputs, seed=0, dims={"batch": 2})
    expected = portarun.compile(model, "onnxruntime:cpu").run(feeds)
    got = portarun.compile(converted, "onnxruntime:cpu").run(feeds)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype
        np.testing.assert_allclose(got[name], value, rtol=2e-2, atol=2e-2)
