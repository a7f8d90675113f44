"""The TensorRT backend as users meet it: registration, targets, what `portarun backends` says.

Tests in the first part run everywhere and check the behaviour on machines without
TensorRT or an NVIDIA GPU. The ``gpu``-marked tests at the end need TensorRT and an
NVIDIA GPU and are skipped (with that reason) elsewhere; none of them has run in this
repository's CI.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner

import portarun
from portarun import models
from portarun.cli import main
from portarun.errors import BackendUnavailableError, InputError
from portarun.registry import get_backend, resolve_target
from portarun.types import Precision, Target

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _hardware_ready() -> bool:
    if not HAS_TENSORRT:
        return False
    try:
        get_backend("tensorrt").devices()
    except BackendUnavailableError:
        return False
    return True


needs_hardware = pytest.mark.skipif(not _hardware_ready(), reason="needs TensorRT and an NVIDIA GPU")
without_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="checks the behaviour where tensorrt is not installed")


def test_backend_loads_without_its_sdk():
    backend = get_backend("tensorrt")
    assert backend.name == "tensorrt" and backend.default_device == "cuda"
    assert set(backend.precisions) == set(Precision)
    assert {"shapes", "dim_ranges", "workspace_mb"} <= set(backend.options)


@pytest.mark.parametrize("text, expected", [
    ("tensorrt", Target("tensorrt")),
    ("tensorrt:cuda", Target("tensorrt", "cuda")),
    ("TensorRT:cuda:1", Target("tensorrt", "cuda", 1)),
    ("rocm:gpu", Target("onnxruntime", "rocm")),
    ("rocm:gpu:1", Target("onnxruntime", "rocm", 1)),
])
def test_target_parsing(text, expected):
    assert resolve_target(text) == expected


@without_tensorrt
def test_devices_say_what_is_missing_and_how_to_install_it():
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("tensorrt").devices()
    assert "cannot import tensorrt" in info.value.message
    assert "pip install 'portarun[tensorrt]'" in info.value.hint


@without_tensorrt
def test_supports_answers_no_with_the_reason_instead_of_raising():
    support = get_backend("tensorrt").supports(models.build("mlp"), "tensorrt:cuda", "fp16")
    assert not support and "tensorrt" in support.reason


@without_tensorrt
def test_portarun_backends_reports_tensorrt_and_rocm_unavailable_with_install_hints():
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    trt_row = next(line for line in lines if line.startswith("tensorrt "))
    assert " no " in trt_row and "cannot import tensorrt" in trt_row and "pip install 'portarun[tensorrt]'" in trt_row
    rocm_row = next(line for line in lines if line.startswith("onnxruntime:rocm"))
    assert "MIGraphXExecutionProvider" in rocm_row and "onnxruntime-migraphx" in rocm_row


@without_tensorrt
def test_portarun_backends_json_carries_reason_hint_and_missing_targets():
    import json

    result = CliRunner().invoke(main, ["backends", "--json", "-"])
    data = {entry["name"]: entry for entry in json.loads(result.output)}
    assert data["tensorrt"]["available"] is False
    assert data["tensorrt"]["install_hint"].startswith("pip install")
    if data["onnxruntime"]["available"] and "onnxruntime:rocm" in data["onnxruntime"]["missing_targets"]:
        assert "ROCm" in data["onnxruntime"]["missing_targets"]["onnxruntime:rocm"]


@without_tensorrt
def test_compiling_for_tensorrt_here_exits_2_with_the_reason(tmp_path):
    result = CliRunner().invoke(main, ["compile", "builtin:mlp", "-t", "tensorrt:cuda", "-o", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "cannot import tensorrt" in result.output and "pip install" in result.output
    assert not (tmp_path / "a").exists()


def test_rocm_gpu_alias_reaches_onnxruntime_and_says_what_is_missing(tmp_path):
    import onnxruntime

    if {"MIGraphXExecutionProvider", "ROCMExecutionProvider"} & set(onnxruntime.get_available_providers()):
        pytest.skip("this onnxruntime has an AMD GPU execution provider")
    with pytest.raises(BackendUnavailableError) as info:
        portarun.compile("builtin:mlp", "rocm:gpu")
    assert "onnxruntime:rocm" in info.value.message
    assert "MIGraphXExecutionProvider" in info.value.hint and "onnxruntime-migraphx" in info.value.hint
    result = CliRunner().invoke(main, ["compile", "builtin:mlp", "-t", "rocm:gpu", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "MIGraphX" in result.output


# -- on TensorRT and an NVIDIA GPU --------------------------------------------------------------
@pytest.fixture
def trt_cache(tmp_path):
    return str(tmp_path / "trt-cache")


@pytest.mark.gpu
@needs_hardware
def test_fp32_matches_the_reference_and_reports_provenance(trt_cache):
    model = models.build("mlp")
    feeds = portarun.random_feeds(model.inputs, seed=0, dims={"batch": 4})
    expected = portarun.compile(model, "reference").run(feeds)
    with portarun.compile(model, "tensorrt:cuda", "fp32", cache_dir=trt_cache) as exe:
        got = exe.run(feeds)
        assert exe.provenance.details["tf32"] is False
        assert exe.provenance.details["engine_cache"] == "built"
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@needs_hardware
def test_second_compile_hits_the_engine_cache(trt_cache):
    model = models.build("cnn")
    portarun.compile(model, "tensorrt:cuda", "fp16", cache_dir=trt_cache).close()
    with portarun.compile(model, "tensorrt:cuda", "fp16", cache_dir=trt_cache) as again:
        assert again.provenance.details["engine_cache"] == "hit"


@pytest.mark.gpu
@needs_hardware
def test_run_outside_the_profile_is_an_input_error(trt_cache):
    model = models.build("mlp")
    with portarun.compile(model, "tensorrt:cuda", dim_ranges={"batch": [1, 2, 4]}, cache_dir=trt_cache) as exe:
        with pytest.raises(InputError, match="outside the TensorRT optimization profile"):
            exe.run(portarun.random_feeds(model.inputs, seed=0, dims={"batch": 5}))


@pytest.mark.gpu
@needs_hardware
def test_artifact_round_trip_runs_the_saved_engine(trt_cache, tmp_path):
    model = models.build("transformer")
    feeds = portarun.random_feeds(model.inputs, seed=1, dims={"batch": 1, "seq": 16})
    with portarun.compile(model, "tensorrt:cuda", cache_dir=trt_cache) as exe:
        first = exe.run(feeds)
        exe.save(tmp_path / "artifact")
    with portarun.load_compiled(tmp_path / "artifact") as loaded:
        assert loaded.provenance.details["engine_cache"] == "artifact"
        again = loaded.run(feeds)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
