"""openvino:cpu against the reference backend; precision is what was asked, and says so."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun
from portarun.errors import (BackendUnavailableError, CompileError, InvalidTargetError, UnsupportedError,
                             UsageError)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_fp32_matches_reference_and_reports_f32(name, builtin_models, builtin_feeds):
    model = builtin_models[name]
    feeds = builtin_feeds(name)
    expected = portarun.compile(model, "reference:cpu").run(feeds)
    with portarun.compile(model, "openvino:cpu", "fp32") as exe:
        got = exe.run(feeds)
        # On a bf16-capable CPU OpenVINO computes in bf16 unless the f32 hint is applied:
        # the reported precision and the 1e-4 parity both catch a missing hint.
        assert exe.provenance.precision == "fp32"
        assert exe.provenance.details["inference_precision"] == "f32"
        assert exe.provenance.providers == ("CPU",)
    for out in expected:
        np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-5)


def test_decoder_with_kv_cache_matches_reference():
    from portarun import models

    model = models.build("decoder-tiny")
    dims = {**models.get("decoder-tiny").default_dims, "seq": 3, "past_seq": 5, "total_seq": 8}
    feeds = portarun.random_feeds(model.inputs, seed=4, dims=dims, int_high=50)
    expected = portarun.compile(model, "reference:cpu").run(feeds)
    got = portarun.compile(model, "openvino:cpu", "fp32").run(feeds)
    assert set(got) == set(expected)
    for out in expected:
        np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-5)


def test_feeds_are_read_in_place_never_written_and_any_layout_runs():
    """The request reads the caller's arrays without copying them (share_inputs): they must come back
    unchanged, and a later run with other arrays must not see the earlier ones (a request that kept
    pointing at the first feeds would). Views that are not C-contiguous or not writable run the same."""
    from portarun import models

    model = models.build("decoder-tiny")
    dims = {**models.get("decoder-tiny").default_dims, "seq": 3, "past_seq": 5, "total_seq": 8}
    first = portarun.random_feeds(model.inputs, seed=4, dims=dims, int_high=50)
    second = portarun.random_feeds(model.inputs, seed=5, dims=dims, int_high=50)
    kept = {name: value.copy() for name, value in first.items()}
    reference = portarun.compile(model, "reference:cpu")
    with portarun.compile(model, "openvino:cpu", "fp32") as exe:
        got_first = exe.run(first)
        got_second = exe.run(second)
        for name, value in first.items():
            np.testing.assert_array_equal(value, kept[name], err_msg=f"{name} was written by the run")
        odd = {}
        for name, value in second.items():  # the same numbers in Fortran order, read-only
            view = np.asfortranarray(value) if value.ndim >= 2 else value.copy()
            view.flags.writeable = False
            odd[name] = view
        got_odd = exe.run(odd)
    for got, feeds in ((got_first, first), (got_second, second), (got_odd, second)):
        expected = reference.run(feeds)
        for out in expected:
            np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-5)


def test_bf16_runs_when_asked_and_is_reported(builtin_models, builtin_feeds, cpu_caps):
    if "BF16" not in cpu_caps:
        pytest.skip("this CPU has no bf16 support in OpenVINO (OPTIMIZATION_CAPABILITIES lacks BF16)")
    model, feeds = builtin_models["transformer"], builtin_feeds("transformer")
    f32 = portarun.compile(model, "openvino:cpu", "fp32").run(feeds)["y"]
    exe = portarun.compile(model, "openvino:cpu", "bf16")
    bf16 = exe.run(feeds)["y"]
    assert exe.provenance.precision == "bf16"
    assert exe.provenance.details["inference_precision"] == "bf16"
    diff = np.abs(bf16 - f32).max()
    assert 1e-4 < diff < 0.5  # really computed in bf16, and still the same function


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_runs_where_the_cpu_has_it_and_is_refused_not_downgraded_elsewhere(
        builtin_models, builtin_feeds, cpu_caps, precision):
    """AVX2-only CPUs (no BF16, no FP16), AVX-512 BF16 ones (bf16 only) and AMX ones (both) each get
    the behaviour their hardware allows: computed and reported, or refused naming what the CPU has."""
    from portarun.plugin import cpu_features

    model = builtin_models["mlp"]
    has = (cpu_features().fp16 if precision == "fp16" else cpu_features().bf16) and precision.upper() in cpu_caps
    support = portarun.get_backend("openvino").supports(model, "openvino:cpu", precision)
    if has:
        assert support, support.reason
        exe = portarun.compile(model, "openvino:cpu", precision)
        assert exe.provenance.details["inference_precision"] == {"fp16": "f16", "bf16": "bf16"}[precision]
        feeds = builtin_feeds("mlp")
        expected = portarun.compile(model, "reference:cpu").run(feeds)
        assert portarun.compare(exe.run(feeds), expected, portarun.Tolerance(rtol=0.05, atol=0.05))
        return
    assert not support and precision in support.reason
    assert all(cap in support.reason for cap in cpu_caps)  # it names what this CPU does have
    with pytest.raises(UnsupportedError, match=precision):
        portarun.compile(model, "openvino:cpu", precision)


def test_absent_device_lists_the_devices_that_exist(builtin_models):
    import openvino

    if any(d.startswith("GPU") for d in openvino.Core().available_devices):
        pytest.skip("this machine has an Intel GPU")
    with pytest.raises(BackendUnavailableError) as info:
        portarun.compile(builtin_models["mlp"], "openvino:gpu")
    assert "openvino:cpu" in str(info.value) and "GPU" in info.value.hint
    with pytest.raises(InvalidTargetError, match="openvino:npu"):
        portarun.compile(builtin_models["mlp"], "openvino:tpu")


def test_devices_include_cpu_and_auto(ov_backend):
    kinds = {d.kind for d in ov_backend.devices()}
    assert {"cpu", "auto"} <= kinds


def test_auto_device_runs_and_reports_where(builtin_models, builtin_feeds):
    feeds = builtin_feeds("mlp")
    exe = portarun.compile(builtin_models["mlp"], "openvino:auto", "fp32")
    assert exe.provenance.details["openvino_device"] == "AUTO"
    assert exe.provenance.precision == "fp32" and exe.provenance.details["inference_precision"] == "f32"
    assert exe.provenance.providers and all(p.startswith("CPU") for p in exe.provenance.providers)
    expected = portarun.compile(builtin_models["mlp"], "reference:cpu").run(feeds)
    got = exe.run(feeds)
    for out in expected:
        np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-5)


def test_unused_input_is_accepted_and_reported(ov_helpers):
    relu = helper.make_node("Relu", ["x"], ["y"])
    model = ov_helpers.make_model(
        [relu], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                 helper.make_tensor_value_info("unused", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    exe = portarun.compile(model, "openvino:cpu")
    out = exe.run({"x": np.array([-1.0, 2.0], np.float32), "unused": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(out["y"], [0.0, 2.0])
    assert exe.provenance.details["dropped_inputs"] == ["unused"]


def test_unconvertible_op_is_a_compile_error_naming_it(ov_helpers):
    from onnx import helper as h

    node = h.make_node("FooBar", ["x"], ["y"], domain="com.acme")
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.acme", 1)], ir_version=8)
    model = portarun.Model.from_proto(proto, name="custom", check=False)
    with pytest.raises(CompileError, match="com.acme.FooBar") as info:
        portarun.compile(model, "openvino:cpu")
    assert info.value.backend == "openvino"


def test_performance_options_are_applied_and_reported(builtin_models):
    exe = portarun.compile(builtin_models["mlp"], "openvino:cpu", performance_hint="throughput", streams=2)
    details = exe.provenance.details
    assert details["performance_hint"] == "THROUGHPUT" and details["num_streams"] == 2
    assert portarun.compile(builtin_models["mlp"], "openvino:cpu", threads=1).provenance.details[
        "inference_num_threads"] == 1
    with pytest.raises(UsageError, match="performance_hint"):
        portarun.compile(builtin_models["mlp"], "openvino:cpu", performance_hint="fastest")
    with pytest.raises(UsageError, match="INFERENCE_PRECISION_HINT"):
        portarun.compile(builtin_models["mlp"], "openvino:cpu", config={"INFERENCE_PRECISION_HINT": "bf16"})
    with pytest.raises(UsageError, match="does not accept"):
        portarun.compile(builtin_models["mlp"], "openvino:cpu", precison="fp32")


def test_a_missing_precision_hint_is_refused():
    from portarun_backends.openvino.config import check_precision

    from portarun import Precision

    assert check_precision(Precision.FP32, {"INFERENCE_PRECISION_HINT": "f32"}, "openvino:cpu") is Precision.FP32
    with pytest.raises(CompileError, match="bf16"):
        check_precision(Precision.FP32, {"INFERENCE_PRECISION_HINT": "bf16"}, "openvino:cpu")


def test_provenance_lists_property_reads_that_failed(builtin_models):
    details = portarun.compile(builtin_models["mlp"], "openvino:cpu").provenance.details
    assert details["unreadable_properties"] == {}  # the CPU plugin reads every property it is asked for
