import json

import numpy as np
import pytest

import portarun
from portarun import ArtifactCorruptError, ArtifactIncompatibleError
from portarun.artifact import MANIFEST


@pytest.fixture
def artifact(tmp_path, builtin_models):
    exe = portarun.compile(builtin_models["transformer"], "onnxruntime:cpu", threads=1)
    path = exe.save(tmp_path / "tf.ort")
    return exe, path


def test_round_trip_same_outputs(artifact, builtin_feeds):
    exe, path = artifact
    loaded = portarun.load_compiled(path)
    feeds = builtin_feeds("transformer", seq=8)
    assert np.array_equal(loaded.run(feeds)["y"], exe.run(feeds)["y"])
    assert loaded.target == exe.target and loaded.precision == exe.precision
    assert loaded.inputs == exe.inputs and loaded.model.name == "transformer"
    assert loaded.options == {"threads": 1}
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["model_sha256"] == exe.model.sha256
    assert manifest["sdk_version"] == exe.provenance.sdk_version
    assert set(manifest["files"]) == {"model.onnx", "payload/optimized.onnx"}


def test_tampered_payload_refused(artifact):
    _, path = artifact
    payload = path / "payload" / "optimized.onnx"
    data = bytearray(payload.read_bytes())
    data[-10] ^= 0xFF
    payload.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptError, match="payload/optimized.onnx.*sha256"):
        portarun.load_compiled(path)


def test_missing_file_and_manifest_problems(artifact, tmp_path):
    _, path = artifact
    (path / "model.onnx").unlink()
    with pytest.raises(ArtifactCorruptError, match="missing 'model.onnx'"):
        portarun.load_compiled(path)
    with pytest.raises(ArtifactCorruptError, match="not a portarun artifact"):
        portarun.load_compiled(tmp_path)
    with pytest.raises(ArtifactCorruptError, match="does not exist"):
        portarun.load_compiled(tmp_path / "nothing")
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactCorruptError, match="cannot read"):
        portarun.load_compiled(path)


def test_manifest_escaping_paths_refused(artifact):
    _, path = artifact
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactCorruptError, match="outside the artifact"):
        portarun.load_compiled(path)


def test_other_sdk_version_refused_unless_rebuild(artifact, builtin_feeds):
    exe, path = artifact
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["sdk_version"] = "0.0.1"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIncompatibleError, match="compiled with onnxruntime 0.0.1") as info:
        portarun.load_compiled(path)
    assert "rebuild=True" in str(info.value)
    rebuilt = portarun.load_compiled(path, rebuild=True)
    feeds = builtin_feeds("transformer", seq=4)
    np.testing.assert_allclose(rebuilt.run(feeds)["y"], exe.run(feeds)["y"], rtol=1e-5, atol=1e-6)


def test_schema_mismatch_and_wrong_target(artifact):
    _, path = artifact
    with pytest.raises(portarun.InvalidTargetError, match="compiled for onnxruntime:cpu"):
        portarun.load_compiled(path, "reference:cpu")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["schema"] = "portarun.artifact/99"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIncompatibleError, match="schema"):
        portarun.load_compiled(path)


def test_failed_save_leaves_nothing_and_keeps_old(tmp_path, builtin_models, monkeypatch):
    exe = portarun.compile(builtin_models["mlp"], "onnxruntime:cpu")
    target = tmp_path / "mlp.ort"
    exe.save(target)
    before = (target / MANIFEST).read_text()

    def fail(directory):
        (directory / "partial.bin").write_bytes(b"x")
        raise RuntimeError("payload write failed")

    monkeypatch.setattr(exe, "_save_payload", fail)
    with pytest.raises(RuntimeError):
        exe.save(target)
    with pytest.raises(RuntimeError):
        exe.save(tmp_path / "new.ort")
    assert (target / MANIFEST).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.ort"]


def test_reference_artifact_round_trip(tmp_path, builtin_models, builtin_feeds):
    exe = portarun.compile(builtin_models["cnn"], "reference")
    loaded = portarun.load_compiled(exe.save(tmp_path / "cnn.ref"))
    feeds = builtin_feeds("cnn")
    assert np.array_equal(loaded.run(feeds)["logits"], exe.run(feeds)["logits"])


def test_fp16_artifact_keeps_the_fp16_graph(tmp_path, builtin_models, builtin_feeds):
    import onnx

    exe = portarun.compile(builtin_models["mlp"], "onnxruntime:cpu", "fp16")
    path = exe.save(tmp_path / "mlp.fp16")
    payload = onnx.load(path / "payload" / "optimized.onnx")
    # the graph computes in half precision (before the fix the payload was the fp32 model)
    assert onnx.TensorProto.FLOAT16 in {vi.type.tensor_type.elem_type for vi in payload.graph.value_info}
    loaded = portarun.load_compiled(path)
    feeds = builtin_feeds("mlp")
    assert np.array_equal(loaded.run(feeds)["logits"], exe.run(feeds)["logits"])
    again = loaded.save(tmp_path / "again")  # a loaded artifact saves its payload unchanged
    assert (again / "payload" / "optimized.onnx").read_bytes() == (path / "payload" / "optimized.onnx").read_bytes()
