"""Artifacts (IR + exported blob) and OpenVINO's model cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

import portarun
from portarun.errors import ArtifactCorruptError, ArtifactIncompatibleError


@pytest.fixture(scope="module")
def saved(builtin_models, tmp_path_factory):
    model = builtin_models["transformer"]
    feeds = portarun.random_feeds(model.inputs, seed=3, dims={"batch": 1, "seq": 16})
    exe = portarun.compile(model, "openvino:cpu", "fp32")
    path = exe.save(tmp_path_factory.mktemp("ov") / "transformer.openvino-cpu")
    return path, feeds, exe.run(feeds)["y"]


def test_artifact_holds_ir_and_blob_keyed_by_device_and_version(saved):
    import openvino

    path, _, _ = saved
    manifest = json.loads((path / "manifest.json").read_text())
    payload = manifest["payload"]
    assert (path / "payload" / payload["ir"]).is_file() and (path / "payload" / "model.bin").is_file()
    assert payload["blob"] == "compiled.CPU.blob" and (path / "payload" / payload["blob"]).is_file()
    assert payload["blob_device"] == "CPU" and payload["openvino_version"] == openvino.get_version()
    assert payload["compile_config"]["INFERENCE_PRECISION_HINT"] == "f32"


def test_round_trip_loads_the_blob_with_the_same_precision(saved):
    path, feeds, expected = saved
    loaded = portarun.load_compiled(path)
    assert loaded.provenance.details["loaded_as"] == "exported blob"
    # import_model without the hint would compute in bf16 on this CPU
    assert loaded.provenance.precision == "fp32" and loaded.provenance.details["inference_precision"] == "f32"
    np.testing.assert_array_equal(loaded.run(feeds)["y"], expected)


def test_a_model_loaded_from_the_cache_saves_a_loadable_blob(builtin_models, tmp_path):
    # OpenVINO exports an unreadable blob from a cache-loaded compiled model; the backend recompiles first.
    model = builtin_models["mlp"]
    feeds = portarun.random_feeds(model.inputs, seed=2)
    portarun.compile(model, "openvino:cpu", cache_dir=str(tmp_path / "cache"))
    cached = portarun.compile(model, "openvino:cpu", cache_dir=str(tmp_path / "cache"))
    assert cached.provenance.details["loaded_from_cache"] is True
    path = cached.save(tmp_path / "mlp.ov")
    loaded = portarun.load_compiled(path)
    assert loaded.provenance.details["loaded_as"] == "exported blob"
    np.testing.assert_array_equal(loaded.run(feeds)["logits"], cached.run(feeds)["logits"])
    again = portarun.load_compiled(loaded.save(tmp_path / "mlp.ov2"))  # an imported model saves a good blob too
    assert again.provenance.details["loaded_as"] == "exported blob"


def test_tampered_blob_is_refused(saved, tmp_path):
    import shutil

    path, _, _ = saved
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    blob = copy / "payload" / "compiled.CPU.blob"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptError, match="compiled.CPU.blob"):
        portarun.load_compiled(copy)


def test_a_blob_the_plugin_refuses_is_replaced_by_the_ir_and_said_so(saved, tmp_path):
    import hashlib
    import shutil

    path, feeds, expected = saved
    copy = tmp_path / "refused"
    shutil.copytree(path, copy)
    blob = copy / "payload" / "compiled.CPU.blob"
    blob.write_bytes(b"not a blob")  # with a matching hash: only the plugin can tell
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["payload/compiled.CPU.blob"] = hashlib.sha256(b"not a blob").hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    loaded = portarun.load_compiled(copy)
    assert loaded.provenance.details["loaded_as"].startswith("IR (the exported blob was refused")
    assert loaded.provenance.details["inference_precision"] == "f32"
    np.testing.assert_allclose(loaded.run(feeds)["y"], expected, rtol=1e-5, atol=1e-6)


def test_blob_from_another_openvino_version_needs_rebuild(saved, tmp_path):
    import shutil

    path, feeds, expected = saved
    copy = tmp_path / "old"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["payload"]["openvino_version"] = "2024.0.0-00000-old"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIncompatibleError, match="2024.0.0-00000-old") as info:
        portarun.load_compiled(copy)
    assert "rebuild" in info.value.hint
    rebuilt = portarun.load_compiled(copy, rebuild=True)
    assert rebuilt.provenance.details["rebuilt_from"] == "IR"
    assert rebuilt.provenance.details["inference_precision"] == "f32"
    np.testing.assert_allclose(rebuilt.run(feeds)["y"], expected, rtol=1e-5, atol=1e-6)


def test_nncf_artifact_keeps_its_compression_when_rebuilt_from_ir(builtin_models, tmp_path):
    model = builtin_models["mlp"]
    feeds = portarun.random_feeds(model.inputs, seed=1)
    exe = portarun.compile(model, "openvino:cpu", "int8-weight", quantizer="nncf")
    path = exe.save(tmp_path / "mlp.w8")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["payload"]["openvino_version"] = "older"
    (path / "manifest.json").write_text(json.dumps(manifest))
    rebuilt = portarun.load_compiled(path, rebuild=True)
    report = rebuilt.provenance.details["quantization"]
    assert report["method"] == "nncf.compress_weights"
    types = {str(op.get_output_element_type(0).get_type_name()) for op in rebuilt.ov_model.get_ordered_ops()
             if op.get_type_name() == "Constant"}
    assert "u8" in types  # the IR still holds the compressed weights
    np.testing.assert_allclose(rebuilt.run(feeds)["logits"], exe.run(feeds)["logits"], rtol=1e-5, atol=1e-6)


def test_second_compile_hits_the_cache(builtin_models, tmp_path):
    model = builtin_models["cnn"]
    first = portarun.compile(model, "openvino:cpu", "fp32", cache_dir=str(tmp_path))
    second = portarun.compile(model, "openvino:cpu", "fp32", cache_dir=str(tmp_path))
    assert first.provenance.details["loaded_from_cache"] is False
    assert second.provenance.details["loaded_from_cache"] is True
    assert second.provenance.details["cache_dir"] == str(tmp_path)
    assert any(tmp_path.iterdir())
    assert second.provenance.compile_seconds is not None
    # the ONNX -> IR conversion is cached by content too; another model (other weights) is not a hit
    assert first.provenance.details["ir_cache_hit"] is False and second.provenance.details["ir_cache_hit"] is True
    from portarun import models

    other = portarun.compile(models.build("cnn", seed=1), "openvino:cpu", "fp32", cache_dir=str(tmp_path))
    assert other.provenance.details["ir_cache_hit"] is False
    assert other.provenance.details["loaded_from_cache"] is False


def test_a_cached_model_keeps_the_precision_asked_for(builtin_models, builtin_feeds, tmp_path, cpu_caps):
    # OpenVINO's CPU cache entry is shared across precision hints (one blob, hint applied at load):
    # a bf16 compile after an fp32 one hits the cache and must still compute in bf16, and vice versa.
    if "BF16" not in cpu_caps:
        pytest.skip("this CPU has no bf16 support in OpenVINO")
    model, feeds = builtin_models["transformer"], builtin_feeds("transformer")
    uncached = {p: portarun.compile(model, "openvino:cpu", p, cache=False).run(feeds)["y"] for p in ("fp32", "bf16")}
    for precision in ("fp32", "bf16", "fp32"):
        exe = portarun.compile(model, "openvino:cpu", precision, cache_dir=str(tmp_path))
        assert exe.provenance.precision == precision
        np.testing.assert_array_equal(exe.run(feeds)["y"], uncached[precision])
    assert exe.provenance.details["loaded_from_cache"] is True


def test_cache_can_be_turned_off(builtin_models):
    exe = portarun.compile(builtin_models["mlp"], "openvino:cpu", cache=False)
    assert exe.provenance.details["cache_dir"] is None
    assert exe.provenance.details["loaded_from_cache"] is False


def test_default_cache_is_under_the_portarun_cache_dir(builtin_models):
    exe = portarun.compile(builtin_models["mlp"], "openvino:cpu")
    assert exe.provenance.details["cache_dir"] == str(portarun.cache_dir() / "openvino")
