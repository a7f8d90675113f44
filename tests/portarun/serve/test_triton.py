"""`portarun export-triton`: repositories parsed back with Triton's own ModelConfig protobuf (from
tritonclient) and their model files run by the real runtimes Triton's backends wrap. A real Triton
server cannot run here; see the README for the docker command to try one."""

from __future__ import annotations

import importlib.util
import hashlib
import json
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.cli import main
from portarun.serve import triton_config
from portarun.serve.triton import export_triton, preferred_batch_sizes

pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402


def _config(path):
    return text_format.Parse((path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _feeds(batch=3, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((batch, 64)).astype(np.float32)}


@pytest.fixture(scope="module")
def mlp():
    return portarun.load("builtin:mlp")


def test_onnxruntime_repository_runs_like_portarun(tmp_path, mlp):
    import onnxruntime

    result = export_triton(mlp, tmp_path, "onnxruntime:cpu", name="mlp", instances=2)
    assert result.config_text == (result.path / "config.pbtxt").read_text()
    config = _config(result.path)
    assert (config.platform, config.backend, config.max_batch_size) == ("onnxruntime_onnx", "onnxruntime", 8)
    assert [list(t.dims) for t in config.input] == [[64]] and [list(t.dims) for t in config.output] == [[10]]
    assert config.instance_group[0].count == 2
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"
    assert triton_config.check_repository(result.path, mlp.inputs, mlp.outputs) == []
    session = onnxruntime.InferenceSession(str(result.path / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = _feeds()
    with portarun.compile(mlp, "onnxruntime:cpu") as executable:
        assert np.array_equal(session.run(None, feeds)[0], executable.run(feeds)["logits"])


@pytest.mark.parametrize("target, kind, accelerator", [
    ("onnxruntime:tensorrt:0", "KIND_GPU", ("gpu_execution_accelerator", "tensorrt")),
    ("onnxruntime:openvino", "KIND_CPU", ("cpu_execution_accelerator", "openvino")),
    ("onnxruntime:cuda:1", "KIND_GPU", None),
])
def test_onnxruntime_accelerator_follows_the_target(tmp_path, mlp, target, kind, accelerator):
    # the device is not needed here: the repository is for the machine that runs Triton
    config = _config(export_triton(mlp, tmp_path, target, name="m").path)
    group = config.instance_group[0]
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == kind
    assert list(group.gpus) == ([int(target.rsplit(":", 1)[1])] if kind == "KIND_GPU" else [])
    accelerators = config.optimization.execution_accelerators
    if accelerator is None:
        assert not accelerators.gpu_execution_accelerator and not accelerators.cpu_execution_accelerator
    else:
        (entry,) = getattr(accelerators, accelerator[0])
        assert entry.name == accelerator[1]
    if accelerator and accelerator[1] == "tensorrt":
        assert entry.parameters["precision_mode"] == "FP32"


def test_tensorrt_accelerator_carries_fp16(tmp_path, mlp):
    config = _config(export_triton(mlp, tmp_path, "onnxruntime:tensorrt", "fp16", name="m").path)
    (entry,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert entry.parameters["precision_mode"] == "FP16"
    with pytest.raises(portarun.UnsupportedError, match="TensorRT accelerator"):
        export_triton(mlp, tmp_path, "onnxruntime:cuda", "fp16", name="m2")
    with pytest.raises(portarun.UnsupportedError, match="no execution provider"):
        export_triton(mlp, tmp_path, "onnxruntime:rocm", name="m3")


def test_openvino_repository_holds_an_ir_openvino_reads(tmp_path, mlp):
    import openvino as ov

    result = export_triton(mlp, tmp_path, "openvino:cpu", name="mlp_ov")
    config = _config(result.path)
    assert config.backend == "openvino" and not config.platform
    assert config.parameters["INFERENCE_PRECISION_HINT"].string_value == "f32"
    assert triton_config.check_repository(result.path, mlp.inputs, mlp.outputs) == []
    compiled = ov.Core().compile_model(str(result.path / "1" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = _feeds()
    got = compiled(feeds)[0]
    with portarun.compile(mlp, "onnxruntime:cpu") as reference:
        np.testing.assert_allclose(got, reference.run(feeds)["logits"], rtol=1e-4, atol=1e-5)


def _fixed_model():
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], [weight])
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_batch_folds_only_when_the_first_dim_is_a_batch_dim(tmp_path):
    model = _fixed_model()
    config = _config(export_triton(model, tmp_path, "onnxruntime:cpu", name="fixed").path)
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [3, 4]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(portarun.UsageError, match="not a batch dim"):
        export_triton(model, tmp_path, "onnxruntime:cpu", name="fixed2", max_batch_size=4)


def test_dynamic_non_batch_dims_are_minus_one(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    config = _config(export_triton(model, tmp_path, "onnxruntime:cpu", name="seq", max_batch_size=16).path)
    assert config.max_batch_size == 16 and list(config.input[0].dims) == [-1, 8]


def test_preferred_batch_sizes_come_from_a_bench_sweep(tmp_path, mlp):
    # a `portarun bench --json` report's rows (batch, items per second); 8 is no real gain over 4
    report = tmp_path / "bench.json"
    rows = [{"batch": b, "per_second": s} for b, s in ((1, 100.0), (2, 190.0), (4, 300.0), (8, 305.0), (16, 500.0))]
    report.write_text(json.dumps({"rows": rows}))
    assert preferred_batch_sizes(report, 8) == [2, 4]
    result = export_triton(mlp, tmp_path / "repo", "onnxruntime:cpu", name="m", from_bench=report,
                           max_batch_size=8)
    assert list(_config(result.path).dynamic_batching.preferred_batch_size) == [2, 4]


def test_tensorrt_engine_is_filed_by_compute_capability(tmp_path, mlp):
    # No GPU here, so this is a plumbing test: a reference-backend artifact whose manifest is edited
    # to look like a tensorrt one, with stand-in engine bytes. It checks file placement and naming only.
    with portarun.compile(mlp, "reference") as executable:
        root = executable.save(tmp_path / "artifact")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(backend="tensorrt", target="tensorrt:cuda:0",
                    payload={"engine": "model.engine", "engine_key": {"compute_capability": "9.0"},
                             "profiles": {"x": [[1, 64], [4, 64], [4, 64]]}})  # the engine takes batches up to 4
    manifest["provenance"].update(backend="tensorrt", target="tensorrt:cuda:0")  # a closed artifact agrees with itself
    (root / "payload" / "model.engine").write_bytes(b"stand-in engine")
    manifest["files"]["payload/model.engine"] = hashlib.sha256(b"stand-in engine").hexdigest()  # every file is listed
    (root / "manifest.json").write_text(json.dumps(manifest))
    result = export_triton(root, tmp_path / "repo", name="mlp_trt")
    config = _config(result.path)
    assert config.platform == "tensorrt_plan" and dict(config.cc_model_filenames) == {"9.0": "model_sm90.plan"}
    assert config.max_batch_size == 4
    assert (result.path / "1" / "model_sm90.plan").read_bytes() == b"stand-in engine"
    assert triton_config.check_repository(result.path, mlp.inputs, mlp.outputs) == []
    with pytest.raises(portarun.UsageError, match="batches up to 4"):
        export_triton(root, tmp_path / "repo", name="mlp_trt8", max_batch_size=8)
    with pytest.raises(portarun.UsageError, match="export a tensorrt artifact"):
        export_triton(mlp, tmp_path / "repo", "tensorrt:cuda", name="x")


def _stand_in_pb_utils() -> types.ModuleType:
    """The smallest honest stand-in for Triton's ``triton_python_backend_utils`` (it exists only inside
    Triton's python-backend stub): the four names model.py uses, with the documented behaviour."""
    module = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, np.asarray(array)

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonError:
        def __init__(self, message):
            self._message = message

        def message(self):
            return self._message

    module.Tensor, module.InferenceResponse, module.TritonError = Tensor, InferenceResponse, TritonError
    module.get_input_tensor_by_name = lambda request, name: next((t for t in request if t.name() == name), None)
    return module


def _load_model_py(path, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stand_in_pb_utils())
    spec = importlib.util.spec_from_file_location("triton_model_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["xla:cpu", "xla:gpu"])
def test_python_backend_model_runs_the_portarun_artifact(tmp_path, mlp, monkeypatch, target):
    result = export_triton(mlp, tmp_path, target, name="mlp_xla")
    config = _config(result.path)
    assert config.backend == "python"
    assert triton_config.check_repository(result.path, mlp.inputs, mlp.outputs) == []
    version = result.path / "1"
    # xla:cpu compiles here and ships an artifact; xla:gpu cannot, so model.py compiles at initialize
    assert (version / "artifact").is_dir() == (target == "xla:cpu")
    module = _load_model_py(version / "model.py", monkeypatch)
    pb = sys.modules["triton_python_backend_utils"]
    model = module.TritonPythonModel()
    if target == "xla:gpu":  # no GPU here: initialize must fail the way portarun does, naming the target
        with pytest.raises(portarun.PortarunError, match="xla"):
            model.initialize({"model_repository": str(result.path), "model_version": "1"})
        return
    model.initialize({"model_repository": str(result.path), "model_version": "1"})
    feeds = [_feeds(2, seed) for seed in range(3)]
    bad = [pb.Tensor("x", np.zeros((2, 63), np.float32))]
    responses = model.execute([[pb.Tensor("x", f["x"])] for f in feeds] + [bad])
    with portarun.compile(mlp, "xla:cpu") as executable:
        for response, f in zip(responses, feeds):
            assert response.error is None
            (tensor,) = response.output_tensors
            assert tensor.name() == "logits" and np.array_equal(tensor.as_numpy(), executable.run(f)["logits"])
    assert responses[-1].error is not None and "dim 1 must be 64" in responses[-1].error.message()
    model.finalize()


def test_cli_writes_a_repository(tmp_path):
    result = CliRunner().invoke(main, ["export-triton", "builtin:mlp", "-t", "onnxruntime:cpu", "--repo",
                                       str(tmp_path), "--instances", "2"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime backend" in result.output and "checked config.pbtxt" in result.output
    assert _config(tmp_path / "mlp").instance_group[0].count == 2
