import onnxruntime as ort
import pytest

import portarun
from portarun import BackendUnavailableError, CompileError, Precision, UsageError


def test_devices_and_provenance(builtin_models):
    backend = portarun.get_backend("onnxruntime")
    assert [d.kind for d in backend.devices()][0] == "cpu"
    exe = portarun.compile(builtin_models["mlp"], "onnxruntime", threads=1, graph_optimization_level="basic")
    prov = exe.provenance
    assert exe.target == portarun.Target("onnxruntime", "cpu")
    assert prov.providers == ("CPUExecutionProvider",) and prov.sdk_version == ort.__version__
    assert prov.details["graph_optimization_level"] == "basic" and prov.details["intra_op_threads"] == 1
    assert prov.compile_seconds is not None and prov.compile_seconds >= 0


@pytest.mark.parametrize("device, hint", [("cuda", "onnxruntime-gpu"), ("tensorrt", "TensorRT"),
                                          ("rocm", "MIGraphX"), ("openvino", "onnxruntime-openvino")])
def test_missing_execution_provider_is_an_error_with_install_hint(builtin_models, device, hint):
    if any(ep in ort.get_available_providers() for ep in (f"{device}ExecutionProvider",)):
        pytest.skip(f"this onnxruntime build has the {device} EP")
    with pytest.raises(BackendUnavailableError) as info:
        portarun.compile(builtin_models["mlp"], f"onnxruntime:{device}")
    assert f"onnxruntime:{device} is unavailable" in str(info.value) and hint in str(info.value)


def test_rocm_alias_maps_to_onnxruntime(builtin_models):
    with pytest.raises(BackendUnavailableError, match="onnxruntime:rocm"):
        portarun.compile(builtin_models["mlp"], "rocm:gpu")


def test_silent_cpu_fallback_is_refused(builtin_models, monkeypatch):
    # Pretend this build lists the CUDA EP: ORT then creates the session on the CPU with a
    # warning, which is exactly the silent fallback portarun must refuse.
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: real() + ["CUDAExecutionProvider"])
    with pytest.raises(CompileError, match="refusing the silent fallback"):
        portarun.compile(builtin_models["mlp"], "onnxruntime:cuda")


def test_bad_options(builtin_models):
    with pytest.raises(UsageError, match="does not accept option"):
        portarun.compile(builtin_models["mlp"], "onnxruntime:cpu", thread=2)
    with pytest.raises(UsageError, match="graph_optimization_level"):
        portarun.compile(builtin_models["mlp"], "onnxruntime:cpu", graph_optimization_level="max")


def test_unknown_device_kind(builtin_models):
    with pytest.raises(portarun.InvalidTargetError, match="no device kind 'tpu'"):
        portarun.compile(builtin_models["mlp"], "onnxruntime:tpu")


def test_session_config_is_applied_and_reported(builtin_models, builtin_feeds):
    exe = portarun.compile(builtin_models["mlp"], "onnxruntime:cpu",
                           session_config={"session.intra_op.allow_spinning": "0"})
    assert exe.provenance.details["session_config"] == {"session.intra_op.allow_spinning": "0"}
    assert exe.run(builtin_feeds("mlp"))["logits"].shape == (1, 10)


def test_fp16_within_fp16_tolerance(builtin_models, builtin_feeds):
    model = builtin_models["transformer"]
    feeds = builtin_feeds("transformer", seq=16)
    expected = portarun.compile(model, "reference").run(feeds)
    exe = portarun.compile(model, "onnxruntime:cpu", "fp16")
    assert exe.provenance.precision == "fp16"
    result = portarun.compare(exe.run(feeds), expected, portarun.Tolerance(rtol=2e-2, atol=2e-2))
    assert result, result.summary()
    assert result.max_abs > 0  # really computed in half precision


def test_quantized_precision_needs_a_quantized_model(builtin_models):
    support = portarun.get_backend("onnxruntime").supports(builtin_models["mlp"], "onnxruntime:cpu",
                                                           Precision.INT8)
    assert not support and "quantize it to int8 first" in support.reason
    assert not portarun.get_backend("onnxruntime").supports(builtin_models["mlp"], "onnxruntime:cpu", "bf16")


def test_closed_executable(builtin_models, builtin_feeds):
    exe = portarun.compile(builtin_models["mlp"], "onnxruntime:cpu")
    exe.close()
    with pytest.raises(portarun.RunError, match="closed"):
        exe.run(builtin_feeds("mlp"))
