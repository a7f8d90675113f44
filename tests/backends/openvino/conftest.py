"""Fixtures for the OpenVINO backend tests: skipped as a whole when openvino is not installed."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'portarun[openvino]')")

import portarun  # noqa: E402


@pytest.fixture(scope="session")
def ov_backend():
    return portarun.get_backend("openvino")


@pytest.fixture(scope="session")
def cpu_caps():
    """What OpenVINO's CPU plugin can compute here (its OPTIMIZATION_CAPABILITIES, BF16/FP16 kept only
    where the CPU's ISA, capped by ONEDNN_MAX_CPU_ISA, has them): the backend decides with the same set."""
    from portarun_backends.openvino.devices import capabilities

    return capabilities("CPU")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="case") -> portarun.Model:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    ir = {17: 8, 21: 10}[opset]
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    return portarun.Model.from_proto(proto, name=name)


def weight_only_qdq(bits: int, seed: int = 0) -> tuple[portarun.Model, np.ndarray]:
    """x[1,64] @ DequantizeLinear(w), opset 21: per-channel int8, or blocked int4 with block 32."""
    rng = np.random.default_rng(seed)
    k, n = 64, 16
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    if bits == 8:
        q = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
        scale = (rng.random(n) * 0.02 + 0.01).astype(np.float32)
        inits = [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scale, "w_scale")]
        dq = helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], axis=1)
    else:
        q = rng.integers(-8, 8, size=(k, n))
        scale = (rng.random((k // 32, n)) * 0.1 + 0.05).astype(np.float32)
        w_q = helper.make_tensor("w_q", TensorProto.INT4, [k, n], q.ravel().tolist())
        inits = [w_q, numpy_helper.from_array(scale, "w_scale")]
        dq = helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], axis=0, block_size=32)
    mm = helper.make_node("MatMul", ["x", "w"], ["y"])
    return make_model([dq, mm], [x], [y], inits, opset=21, name=f"w{bits}"), rng.standard_normal((1, k)).astype(np.float32)


@pytest.fixture(scope="session")
def ov_helpers():
    """The helpers above, for test modules (importlib import mode: they cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(cosine=cosine, make_model=make_model, weight_only_qdq=weight_only_qdq)
