"""Which execution providers a target means and their options: no GPU needed, only names and documented keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from portarun.errors import BackendUnavailableError, UnsupportedError
from portarun.types import Precision, Target
from portarun_backends.onnxruntime import providers
from portarun_backends.onnxruntime.providers import (
    INSTALL_BY_DEVICE,
    choose_providers,
    migraphx_options,
    ort_trt_ep_cache_dir,
    provider_options_for,
    shared_cache_root,
)

CPU_ONLY = {"CPUExecutionProvider", "AzureExecutionProvider"}
NVIDIA = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
AMD_NEW = {"MIGraphXExecutionProvider", "CPUExecutionProvider"}
AMD_OLD = {"MIGraphXExecutionProvider", "ROCMExecutionProvider", "CPUExecutionProvider"}
ROCM_ONLY = {"ROCMExecutionProvider", "CPUExecutionProvider"}


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "portarun" / "onnxruntime"  # what the ORT backend passes by default


@pytest.mark.parametrize("target, available, expected", [
    ("onnxruntime:cpu", CPU_ONLY, ["CPUExecutionProvider"]),
    ("onnxruntime:cuda", NVIDIA, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("onnxruntime:tensorrt", NVIDIA, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("onnxruntime:rocm", AMD_NEW, ["MIGraphXExecutionProvider", "CPUExecutionProvider"]),
    ("onnxruntime:rocm", AMD_OLD, ["MIGraphXExecutionProvider", "CPUExecutionProvider"]),
    ("onnxruntime:rocm", ROCM_ONLY, ["ROCMExecutionProvider", "CPUExecutionProvider"]),
    ("onnxruntime:migraphx", AMD_OLD, ["MIGraphXExecutionProvider", "CPUExecutionProvider"]),
])
def test_ep_choice_per_target(target, available, expected, cache):
    choice = choose_providers(Target.parse(target), available, Precision.FP32, {}, cache)
    assert choice.providers == expected
    assert len(choice.provider_options) == len(expected)


def test_rocm_ep_is_used_only_where_migraphx_is_absent(cache):
    assert "ROCMExecutionProvider" not in choose_providers(Target("onnxruntime", "rocm"), AMD_OLD,
                                                           Precision.FP32, {}, cache).providers


@pytest.mark.parametrize("device", ["rocm", "migraphx", "tensorrt", "cuda"])
def test_a_missing_ep_is_unavailable_with_the_package_to_install(device, cache):
    with pytest.raises(BackendUnavailableError) as info:
        choose_providers(Target("onnxruntime", device), CPU_ONLY, Precision.FP32, {}, cache)
    assert "which this onnxruntime build lacks" in info.value.message
    assert info.value.hint == INSTALL_BY_DEVICE[device]
    assert "pip install" in info.value.hint


def test_rocm_hint_explains_that_ort_dropped_the_rocm_ep():
    hint = INSTALL_BY_DEVICE["rocm"]
    assert "MIGraphXExecutionProvider" in hint and "1.23" in hint and "onnxruntime-migraphx" in hint


def test_unknown_device_lists_the_targets(cache):
    with pytest.raises(BackendUnavailableError, match="no target") as info:
        choose_providers(Target("onnxruntime", "tpu"), CPU_ONLY, Precision.FP32, {}, cache)
    assert "onnxruntime:rocm" in info.value.hint


# -- MIGraphX ----------------------------------------------------------------------------------
@pytest.mark.parametrize("precision, fp16, bf16", [(Precision.FP32, "0", "0"), (Precision.FP16, "1", "0"),
                                                   (Precision.BF16, "0", "1"), (Precision.INT8, "0", "0")])
def test_migraphx_precision_flags_on_current_onnxruntime(precision, fp16, bf16, tmp_path):
    options = migraphx_options(precision, 1, tmp_path, "1.23.2")
    assert options["device_id"] == "1"
    assert options["migraphx_fp16_enable"] == fp16
    assert options["migraphx_bf16_enable"] == bf16
    # A Q/DQ model already says how to quantize: MIGraphX's own int8 calibration is never switched on.
    assert options["migraphx_int8_enable"] == "0"


def test_migraphx_model_cache_dir_on_current_onnxruntime(tmp_path):
    options = migraphx_options(Precision.FP32, 0, tmp_path, "1.24.0")
    assert options["migraphx_model_cache_dir"] == str(tmp_path / "migraphx")
    assert Path(options["migraphx_model_cache_dir"]).is_dir()
    assert not any(key.startswith(("migraphx_save", "migraphx_load")) for key in options)


def test_older_onnxruntime_gets_no_keys_it_would_reject(tmp_path):
    # 1.19-1.22 knew only a single fixed save/load path, which would reuse one model's program for another.
    options = migraphx_options(Precision.FP16, 0, tmp_path, "1.22.2")
    assert set(options) == {"device_id", "migraphx_fp16_enable", "migraphx_int8_enable"}
    with pytest.raises(UnsupportedError, match="bf16 only from ONNX Runtime 1.23"):
        migraphx_options(Precision.BF16, 0, tmp_path, "1.22.2")


def test_migraphx_user_options_win(cache, monkeypatch):
    monkeypatch.setattr(providers, "ort_version", lambda: "1.23.0")
    choice = choose_providers(Target("onnxruntime", "rocm", 2), AMD_NEW, Precision.FP16,
                              {"migraphx_exhaustive_tune": "1", "migraphx_fp16_enable": "0"}, cache)
    options = choice.provider_options[0]
    assert options["device_id"] == "2"
    assert options["migraphx_exhaustive_tune"] == "1" and options["migraphx_fp16_enable"] == "0"
    assert choice.provider_options[1] == {}  # user options go to the primary EP only


def test_rocm_ep_options(cache):
    assert provider_options_for("ROCMExecutionProvider", Target("onnxruntime", "rocm", 1), Precision.FP32, {},
                                cache) == {"device_id": 1}


# -- TensorRT EP ----------------------------------------------------------------------------------
def test_tensorrt_ep_engines_share_the_tensorrt_cache_folder_keyed_by_versions(cache, monkeypatch):
    monkeypatch.setattr(providers, "ort_version", lambda: "1.23.2")
    monkeypatch.setattr(providers, "tensorrt_library_version", lambda: "10.13.0.35")
    options = provider_options_for("TensorrtExecutionProvider", Target("onnxruntime", "tensorrt"), Precision.FP16,
                                   {}, cache)
    expected = cache.parent / "tensorrt" / "ort-trt-ep" / "ort1.23.2-trt10.13.0.35"
    assert options["trt_engine_cache_enable"] is True and options["trt_timing_cache_enable"] is True
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(expected)
    assert expected.is_dir()
    assert options["trt_fp16_enable"] is True and options["trt_int8_enable"] is False


def test_tensorrt_ep_cache_changes_with_ort_or_tensorrt_version(cache):
    a = ort_trt_ep_cache_dir(cache, "1.23.2", "10.13.0")
    assert a != ort_trt_ep_cache_dir(cache, "1.24.0", "10.13.0")
    assert a != ort_trt_ep_cache_dir(cache, "1.23.2", "11.4.0")
    assert ort_trt_ep_cache_dir(cache, "1.23.2", None).name == "ort1.23.2-trtsystem"


def test_a_user_chosen_cache_dir_holds_the_tensorrt_folder_itself(tmp_path):
    assert shared_cache_root(tmp_path / "onnxruntime") == tmp_path
    assert shared_cache_root(tmp_path / "my-cache") == tmp_path / "my-cache"


def test_tensorrt_ep_int8_and_device_index(cache):
    options = provider_options_for("TensorrtExecutionProvider", Target("onnxruntime", "tensorrt", 3), Precision.INT8,
                                   {"trt_max_workspace_size": 1 << 30}, cache)
    assert options["device_id"] == 3 and options["trt_int8_enable"] is True
    assert options["trt_max_workspace_size"] == 1 << 30


def test_without_a_cache_dir_no_cache_options(tmp_path):
    options = provider_options_for("TensorrtExecutionProvider", Target("onnxruntime", "tensorrt"), Precision.FP32,
                                   {}, None)
    assert not any(key.startswith("trt_engine_cache") for key in options)
    assert "migraphx_model_cache_dir" not in migraphx_options(Precision.FP32, 0, None, "1.23.0")
