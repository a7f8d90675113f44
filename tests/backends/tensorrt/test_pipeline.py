"""portarun's TensorRT code paths end to end, driven by the fake `tensorrt` in conftest.py.

These walk compile -> engine cache -> run -> save -> load through the backend's real
code; the fake executes the model with onnx's reference evaluator, so passing here
proves portarun's plumbing (profiles, buffers, addresses, copies, cache, artifact
checks), not TensorRT. TensorRT on a GPU is covered by the gpu-marked tests.
"""

from __future__ import annotations

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.errors import ArtifactIncompatibleError, InputError, UnsupportedError
from portarun.registry import get_backend


def feeds_for(model, **dims):
    return portarun.random_feeds(model.inputs, seed=0, dims=dims)


def test_compile_and_run_match_the_reference(fake_stack, tmp_path):
    model = models.build("cnn")
    feeds = feeds_for(model, batch=3)
    expected = portarun.compile(model, "reference").run(feeds)
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)) as exe:
        got = exe.run(feeds)
        assert exe.provenance.device == "Fake GPU (sm_90)"
        assert exe.provenance.details["engine_cache"] == "built"
        assert exe.provenance.details["strongly_typed"] is False
        assert exe.provenance.providers == ("tensorrt", "cuda via fake-cuda")
        again = exe.run(feeds_for(model, batch=1))  # buffers are reused and shapes change per run
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
    assert again[next(iter(expected))].shape[0] == 1


def test_engines_and_timing_caches_are_stored_and_reused(fake_stack, tmp_path):
    trt, _ = fake_stack
    model = models.build("mlp")
    portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)).close()
    builds = trt.Builder.builds
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)) as exe:
        assert exe.provenance.details["engine_cache"] == "hit"
    assert trt.Builder.builds == builds
    assert len(list((tmp_path / "engines").glob("*.plan"))) == 1
    assert len(list((tmp_path / "timing").glob("*.cache"))) == 1
    with portarun.compile(model, "tensorrt:cuda", "fp16", cache_dir=str(tmp_path)) as fp16:
        assert fp16.provenance.details["engine_cache"] == "built"
        assert fp16.provenance.details["set_flags"] == ["FP16"]
    assert len(list((tmp_path / "engines").glob("*.plan"))) == 2


def test_a_corrupt_cached_engine_is_rebuilt(fake_stack, tmp_path):
    model = models.build("mlp")
    portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)).close()
    plan, = (tmp_path / "engines").glob("*.plan")
    plan.write_bytes(b"garbage")
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)) as exe:
        assert exe.provenance.details["engine_cache"] == "built"
        exe.run(feeds_for(model, batch=2))


def test_shape_outside_the_profile_is_refused_before_the_engine_runs(fake_stack, tmp_path):
    model = models.build("mlp")
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path), dim_ranges="batch:1,2,4") as exe:
        exe.run(feeds_for(model, batch=4))
        with pytest.raises(InputError, match="dim 0 \\('batch'\\) is 5"):
            exe.run(feeds_for(model, batch=5))


def test_artifact_round_trip_and_refusal_on_another_tensorrt_or_gpu(fake_stack, tmp_path):
    trt, cuda = fake_stack
    model = models.build("transformer")
    feeds = feeds_for(model, batch=1, seq=8)
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path / "cache")) as exe:
        first = exe.run(feeds)
        exe.save(tmp_path / "artifact")
    assert (tmp_path / "artifact" / "payload" / "engine.plan").is_file()
    with portarun.load_compiled(tmp_path / "artifact") as loaded:
        assert loaded.provenance.details["engine_cache"] == "artifact"
        again = loaded.run(feeds)
    assert set(again) == set(first)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])

    trt.__version__ = "10.4.0"
    with pytest.raises(ArtifactIncompatibleError, match="TensorRT 10.3.0, this machine has TensorRT 10.4.0"):
        portarun.load_compiled(tmp_path / "artifact")
    trt.__version__ = "10.3.0"
    cuda.gpu_info = ("Fake Older GPU", 8, 6)
    with pytest.raises(ArtifactIncompatibleError, match="compute capability 9.0") as info:
        portarun.load_compiled(tmp_path / "artifact")
    assert "rebuild" in info.value.hint
    with portarun.load_compiled(tmp_path / "artifact", rebuild=True) as rebuilt:  # only when allowed
        assert rebuilt.provenance.device == "Fake Older GPU (sm_86)"
        assert rebuilt.provenance.details["engine_cache"] == "built"


def test_same_architecture_other_gpu_model_loads_and_says_where_it_was_built(fake_stack, tmp_path):
    _, cuda = fake_stack
    model = models.build("mlp")
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path / "c")) as exe:
        exe.save(tmp_path / "a")
    cuda.gpu_info = ("Fake GPU PCIe", 9, 0)
    with portarun.load_compiled(tmp_path / "a") as loaded:
        assert loaded.provenance.details["built_on"] == "Fake GPU"


def test_precision_rules_through_supports(fake_stack):
    trt, cuda = fake_stack
    backend = get_backend("tensorrt")
    mlp = models.build("mlp")
    assert backend.supports(mlp, "tensorrt:cuda", "fp16")
    no_int8 = backend.supports(mlp, "tensorrt:cuda", "int8")
    assert not no_int8 and "explicit Q/DQ" in no_int8.reason and "portarun quantize" in no_int8.reason
    cuda.gpu_info = ("Fake Turing", 7, 5)
    no_bf16 = backend.supports(mlp, "tensorrt:cuda", "bf16")
    assert not no_bf16 and "sm_80" in no_bf16.reason
    with pytest.raises(UnsupportedError):
        portarun.compile(mlp, "tensorrt:cuda", "bf16")
    trt.__version__ = "11.4.0"
    cuda.gpu_info = ("Fake GPU", 9, 0)
    assert not backend.supports(mlp, "tensorrt:cuda", "bf16")
    assert backend.supports(mlp, "tensorrt:cuda", "fp16")


def test_tensorrt_11_fp16_builds_a_converted_strongly_typed_network(fake_stack, tmp_path):
    trt, _ = fake_stack
    trt.__version__ = "11.4.0"
    model = models.build("mlp")
    feeds = feeds_for(model, batch=2)
    expected = portarun.compile(model, "reference").run(feeds)
    with portarun.compile(model, "tensorrt:cuda", "fp16", cache_dir=str(tmp_path)) as exe:
        assert exe.provenance.details["strongly_typed"] is True
        assert exe.provenance.details["convert_to"] == "fp16"
        got = exe.run(feeds)
    for name, value in expected.items():
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], value, rtol=2e-2, atol=2e-2)


def test_devices_and_backends_listing_with_the_stack_present(fake_stack):
    devices = get_backend("tensorrt").devices()
    assert [str(d.target) for d in devices] == ["tensorrt:cuda:0"]
    assert "Fake GPU (sm_90), TensorRT 10.3.0" == devices[0].description
    info = {i.name: i for i in portarun.list_backends()}["tensorrt"]
    assert info.available and info.version == "10.3.0"


def test_data_dependent_output_shapes_go_through_the_output_allocator(fake_stack, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["idx"], name="nz")], "nonzero",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, "k"])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with portarun.compile(model, "tensorrt:cuda", cache_dir=str(tmp_path)) as exe:
        first = exe.run({"x": np.array([0, 1.5, 0, 2, 3], np.float32)})["idx"]
        second = exe.run({"x": np.array([1, 0], np.float32)})["idx"]  # smaller: the buffer is reused
        third = exe.run({"x": np.arange(1, 9, dtype=np.float32)})["idx"]  # larger: the buffer grows
    np.testing.assert_array_equal(first, [[1, 3, 4]])
    np.testing.assert_array_equal(second, [[0]])
    np.testing.assert_array_equal(third, [list(range(8))])


def test_cli_profile_options_reach_the_engine_and_the_artifact(fake_stack, tmp_path):
    import json

    from click.testing import CliRunner

    from portarun.cli import main

    out = tmp_path / "mlp.trt"
    result = CliRunner().invoke(main, ["compile", "builtin:mlp", "-t", "tensorrt:cuda", "--option",
                                       "dim_ranges=batch:1,2,4", "--option", f"cache_dir={tmp_path / 'c'}",
                                       "--option", "workspace_mb=256", "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["payload"]["profiles"] == {"x": [[1, 64], [2, 64], [4, 64]]}
    assert manifest["payload"]["engine_key"]["build"]["workspace_mb"] == 256
    assert "cache_dir" not in manifest["options"]  # a machine-local folder is not part of the artifact
    assert str(tmp_path) not in json.dumps(manifest["payload"]["engine_key"])
    shapes = CliRunner().invoke(main, ["compile", "builtin:mlp", "-t", "tensorrt:cuda", "--option",
                                       "shapes=x:1x64,2x64,8x64", "--option", f"cache_dir={tmp_path / 'c'}",
                                       "-o", str(tmp_path / "b")])
    assert shapes.exit_code == 0, shapes.output
    bad = CliRunner().invoke(main, ["compile", "builtin:mlp", "-t", "tensorrt:cuda", "--option",
                                    "dim_ranges=seq:1,2,4", "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no input has" in bad.output
