"""OpenVINO artifacts: a payload field cannot point outside, and a blob altered after saving is not run."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.errors import ArtifactCorruptError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    model = models.build("mlp")
    feeds = portarun.random_feeds(model.inputs, seed=3)
    with portarun.compile(model, "openvino:cpu") as exe:
        expected = exe.run(feeds)
        exe.save(root / "a")
        exe.save(root / "b")
    manifest = json.loads((root / "a" / "manifest.json").read_text())
    if not manifest["payload"].get("blob"):
        pytest.skip(f"no exported blob here: {manifest['payload'].get('blob_skipped')}")
    return root, feeds, expected


def _copy(saved, tmp_path):
    shutil.copytree(saved[0] / "a", tmp_path / "a")
    return tmp_path / "a", json.loads((tmp_path / "a" / "manifest.json").read_text())


def _rewrite(path, manifest):
    manifest["files"] = {rel: hashlib.sha256((path / rel).read_bytes()).hexdigest() for rel in manifest["files"]}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_the_blob_loads_and_is_fingerprinted(saved, tmp_path):
    path, manifest = _copy(saved, tmp_path)
    assert manifest["payload"]["blob_fingerprint"]
    with portarun.load_compiled(path) as exe:
        assert exe.provenance.details["loaded_as"] == "exported blob"
        assert "fallback" not in exe.provenance.details


def test_a_blob_field_pointing_at_another_artifact_is_refused(saved, tmp_path):
    path, manifest = _copy(saved, tmp_path)
    manifest["payload"]["blob"] = str(saved[0] / "b" / "payload" / manifest["payload"]["blob"])
    _rewrite(path, manifest)
    with pytest.raises(ArtifactCorruptError, match="outside the artifact"):
        portarun.load_compiled(path)


def test_an_altered_and_rehashed_blob_falls_back_to_the_ir_and_says_so(saved, tmp_path):
    path, manifest = _copy(saved, tmp_path)
    blob = path / "payload" / manifest["payload"]["blob"]
    data = bytearray(blob.read_bytes())
    at = int(len(data) * 0.9)
    data[at:at + 64] = bytes(64)  # imports fine, computes other numbers (0.04 max abs on the MLP)
    blob.write_bytes(bytes(data))
    _rewrite(path, manifest)
    _root, feeds, expected = saved
    with portarun.load_compiled(path) as exe:
        got = exe.run(feeds)
        details = exe.provenance.details
    assert details["loaded_as"].startswith("IR")
    assert details["fallback"].startswith("blob -> IR: the exported blob computes other outputs")
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
