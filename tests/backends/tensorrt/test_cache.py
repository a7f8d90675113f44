"""Engine cache keys: everything an engine depends on is in the key, and nothing else (no paths)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from portarun import models
from portarun.model import Model
from portarun_backends.tensorrt.builder import BuildSettings
from portarun_backends.tensorrt.cache import EngineCache, EngineKey, engine_key, timing_cache_name
from portarun_backends.tensorrt.cuda import GpuInfo
from portarun_backends.tensorrt.profiles import derive_profile

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 9, 0)
A100 = GpuInfo(0, "NVIDIA A100-SXM4-80GB", 8, 0)
H100_OTHER_INDEX = GpuInfo(3, "NVIDIA H100 80GB HBM3", 9, 0)


@pytest.fixture(scope="module")
def mlp():
    return models.build("mlp")


def key_for(model, gpu=H100, trt="10.3.0", precision="fp32", dim_ranges=None, **settings):
    profile = derive_profile(model.inputs, dim_ranges=dim_ranges)
    return engine_key(model.sha256, trt, gpu, precision, profile, BuildSettings(**settings).to_dict())


def test_same_inputs_give_the_same_key(mlp):
    assert key_for(mlp) == key_for(mlp)
    assert key_for(mlp).digest == key_for(mlp).digest


@pytest.mark.parametrize("change", [
    {"gpu": A100},
    {"trt": "10.4.0"},
    {"precision": "fp16"},
    {"dim_ranges": {"batch": [1, 8, 64]}},
    {"workspace_mb": 1024},
    {"optimization_level": 5},
    {"tf32": True},
])
def test_every_thing_the_engine_depends_on_changes_the_key(mlp, change):
    assert key_for(mlp, **change).digest != key_for(mlp).digest


def test_two_gpus_of_the_same_model_share_engines(mlp):
    # The device index is where it runs, not what the engine is built for.
    assert key_for(mlp, gpu=H100_OTHER_INDEX) == key_for(mlp, gpu=H100)


def test_a_different_model_changes_the_key(mlp):
    assert key_for(models.build("cnn")).digest != key_for(mlp).digest


def test_no_path_enters_the_key_when_the_model_comes_from_a_temporary_folder(mlp):
    keys = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            mlp.save(path)
            loaded = Model.load(path)
            key = key_for(loaded)
            keys.append(key)
            assert folder not in json.dumps(key.to_dict())
            assert "/" not in json.dumps(key.to_dict())
    assert keys[0] == keys[1] == key_for(mlp)


def test_key_round_trips_through_its_dict(mlp):
    key = key_for(mlp, dim_ranges={"batch": [1, 2, 4]})
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key


def test_timing_cache_is_shared_per_gpu_and_tensorrt_version():
    assert timing_cache_name("10.3.0", H100) == timing_cache_name("10.3.0", H100_OTHER_INDEX)
    assert timing_cache_name("10.3.0", H100) != timing_cache_name("10.3.0", A100)
    assert timing_cache_name("10.3.0", H100) != timing_cache_name("10.4.0", H100)


def test_engine_cache_stores_and_finds_engines_by_key(tmp_path, mlp):
    cache = EngineCache(tmp_path)
    key = key_for(mlp)
    assert cache.load_engine(key) is None
    path = cache.store_engine(key, b"serialized-engine")
    assert path.parent == tmp_path / "engines" and path.name == f"{key.digest}.plan"
    assert cache.load_engine(key) == b"serialized-engine"
    assert cache.load_engine(key_for(mlp, gpu=A100)) is None
    assert json.loads(path.with_suffix(".json").read_text())["gpu_name"] == H100.name
    cache.store_timing("10.3.0", H100, b"timing")
    assert cache.load_timing("10.3.0", H100) == b"timing"
    assert cache.load_timing("10.3.0", A100) is None
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries
