"""Artifacts are closed: a manifest names only files inside its own directory, every file is listed
and hashed, the manifest is checked against a schema first, claims are cross-checked, saves fail cleanly."""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

import portarun
from portarun import models
from portarun.errors import ArtifactCorruptError, ArtifactError

MANIFEST = "manifest.json"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One onnxruntime artifact of the MLP, and a second one (whose files an edit may point at)."""
    root = tmp_path_factory.mktemp("artifacts")
    with portarun.compile(models.build("mlp"), "onnxruntime:cpu") as exe:
        exe.save(root / "a")
        exe.save(root / "b")
    return root


@pytest.fixture
def artifact(saved, tmp_path):
    import shutil

    shutil.copytree(saved / "a", tmp_path / "a")
    return tmp_path / "a"


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def _write(path: Path, manifest: dict, *, rehash: bool = False) -> None:
    """Write ``manifest`` back; ``rehash`` recomputes every listed file's sha256 (a careful tamperer)."""
    if rehash:
        manifest["files"] = {rel: hashlib.sha256((path / rel).read_bytes()).hexdigest()
                             for rel in manifest["files"] if (path / rel).is_file()}
    (path / MANIFEST).write_text(json.dumps(manifest))


def _refused(path: Path, kind=ArtifactCorruptError, match: str | None = None):
    with pytest.raises(kind, match=match) as caught:
        portarun.load_compiled(path)
    assert caught.value.hint and len(str(caught.value).splitlines()) == 1
    return caught.value


def test_an_untouched_artifact_loads(artifact):
    with portarun.load_compiled(artifact) as exe:
        assert exe.run(portarun.random_feeds(exe.inputs, seed=0))


@pytest.mark.parametrize("pointer", ["absolute", "dotdot"])
def test_payload_fields_cannot_point_at_another_artifacts_files(artifact, saved, pointer):
    manifest = _manifest(artifact)
    other = saved / "b" / "payload" / manifest["payload"]["optimized_model"]
    manifest["payload"]["optimized_model"] = str(other) if pointer == "absolute" else "../../b/payload/optimized.onnx"
    _write(artifact, manifest)
    _refused(artifact, match="outside the artifact")


def test_an_unlisted_file_is_an_error(artifact):
    manifest = _manifest(artifact)
    dropped = next(rel for rel in manifest["files"] if rel.startswith("payload/"))
    del manifest["files"][dropped]  # the payload file is no longer hashed: it must not be trusted
    _write(artifact, manifest)
    _refused(artifact, match="does not list")


def test_an_added_file_is_an_error(artifact):
    (artifact / "payload" / "extra.bin").write_bytes(b"\0" * 16)
    _refused(artifact, match="does not list")


def test_a_symlinked_manifest_is_refused(artifact, saved):
    (artifact / MANIFEST).unlink()
    os.symlink(saved / "b" / MANIFEST, artifact / MANIFEST)
    _refused(artifact, match="symlink")


def test_a_symlink_inside_the_artifact_is_refused(artifact, saved):
    manifest = _manifest(artifact)
    rel = next(rel for rel in manifest["files"] if rel.startswith("payload/"))
    (artifact / rel).unlink()
    os.symlink(saved / "b" / rel, artifact / rel)  # same bytes, same hash: still not its own file
    _refused(artifact, match="symlink")


def test_a_quantized_precision_must_be_carried_by_the_model(artifact):
    manifest = _manifest(artifact)
    manifest["precision"] = "int8"
    manifest["provenance"]["precision"] = "int8"
    _write(artifact, manifest)
    _refused(artifact, match="says precision int8, but its model is float")


def test_provenance_must_agree_with_the_manifest(artifact):
    manifest = _manifest(artifact)
    manifest["precision"] = "fp16"  # only one of the two places edited
    _write(artifact, manifest)
    _refused(artifact, match="computes in fp32")


def _malformed_cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    wrong = {"str": 7, "dict": "x", "list": {"a": 1}}
    for field, kind in [("schema", "str"), ("backend", "str"), ("sdk_version", "str"), ("target", "str"),
                        ("precision", "str"), ("files", "dict"), ("inputs", "list"), ("outputs", "list"),
                        ("options", "dict"), ("provenance", "dict"), ("payload", "dict"), ("model_name", "str")]:
        cases.append((f"{field}: wrong type", ("set", field, wrong[kind])))
        if field != "model_name":  # a null model name is allowed (the file's own name is used)
            cases.append((f"{field}: null", ("set", field, None)))
        if field not in ("options", "provenance", "payload", "model_name"):
            cases.append((f"{field}: missing", ("del", field)))
    cases += [
        ("target: unparsable", ("set", "target", "::")),
        ("precision: unknown", ("set", "precision", "int3")),
        ("inputs: not specs", ("set", "inputs", [1, 2])),
        ("inputs: spec without dtype", ("set", "inputs", [{"name": "x", "shape": [1]}])),
        ("inputs: bad dtype", ("set", "inputs", [{"name": "x", "dtype": "complex999", "shape": [1]}])),
        ("outputs: shape of dicts", ("set", "outputs", [{"name": "y", "dtype": "float32", "shape": [{}]}])),
        ("files: digest not hex", ("files", "zz")),
        ("files: digest a number", ("files", 5)),
        ("files: absolute name", ("filename", "/etc/passwd")),
        ("files: backslash name", ("filename", "payload\\x")),
        ("provenance: unknown field", ("prov", "colour", "blue")),
        ("provenance: providers not a list", ("prov", "providers", "cpu")),
        ("provenance: details a list", ("prov", "details", [])),
        ("provenance: backend of another", ("prov", "backend", "openvino")),
        ("provenance: compile_seconds a string", ("prov", "compile_seconds", "fast")),
        ("deep nesting", ("set", "options", "DEEP")),
        ("manifest a list", ("whole", [])),
        ("manifest a number", ("whole", 3)),
        ("manifest not JSON", ("raw", b"{not json")),
        ("manifest not UTF-8", ("raw", b"\xff\xfe{}")),
        ("manifest 100,000 brackets", ("raw", b"[" * 100_000)),
    ]
    return cases


CASES = _malformed_cases()


def test_there_are_at_least_45_malformed_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("name, edit", CASES, ids=[c[0] for c in CASES])
def test_malformed_manifests_are_artifact_errors(artifact, name, edit):
    manifest = _manifest(artifact)
    action = edit[0]
    if action == "set" and edit[2] == "DEEP":  # 5,000 nested lists (json.dumps itself would recurse)
        manifest[edit[1]] = "DEEP"
        text = json.dumps(manifest).replace('"DEEP"', "[" * 5000 + "]" * 5000)
        (artifact / MANIFEST).write_text(text)
        action = "done"
    if action == "set":
        manifest[edit[1]] = edit[2]
    elif action == "del":
        del manifest[edit[1]]
    elif action == "files":
        manifest["files"][next(iter(manifest["files"]))] = edit[1]
    elif action == "filename":
        manifest["files"][edit[1]] = "0" * 64
    elif action == "prov":
        manifest["provenance"][edit[1]] = edit[2]
    elif action == "whole":
        manifest = copy.deepcopy(edit[1])
    if action == "raw":
        (artifact / MANIFEST).write_bytes(edit[1])
    elif action != "done":
        _write(artifact, manifest)
    error = _refused(artifact, ArtifactError)
    if action not in ("set",) or edit[1] != "schema" or not isinstance(edit[2], str):
        assert isinstance(error, ArtifactCorruptError), (name, error)


# -- saving ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executable():
    with portarun.compile(models.build("mlp"), "onnxruntime:cpu") as exe:
        yield exe


def _no_leftovers(folder: Path) -> None:
    hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden


def test_saving_onto_a_file_names_the_path_and_the_fix(executable, tmp_path):
    (tmp_path / "out").write_text("not a directory")
    with pytest.raises(ArtifactError, match="a file is in the way") as caught:
        executable.save(tmp_path / "out")
    assert str(tmp_path / "out") in str(caught.value) and caught.value.hint
    _no_leftovers(tmp_path)


def test_saving_onto_a_symlink_is_refused(executable, tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(ArtifactError, match="symlink"):
        executable.save(tmp_path / "link")
    _no_leftovers(tmp_path)


def test_a_full_disk_is_an_artifact_error_and_leaves_nothing(executable, tmp_path, monkeypatch):
    # a fake ENOSPC from the payload writer (filling a real disk is not a unit test)
    def full(payload_dir):
        (payload_dir / "partial.bin").write_bytes(b"\0" * 1024)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(executable, "_save_payload", full)
    with pytest.raises(ArtifactError, match="No space left on device") as caught:
        executable.save(tmp_path / "out")
    assert "free some space" in caught.value.hint
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


def test_a_read_only_parent_is_an_artifact_error(executable, tmp_path, monkeypatch):
    import tempfile

    if os.geteuid() != 0:  # a real read-only folder where permissions apply
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        target = tmp_path / "ro" / "out"
    else:  # root ignores permissions: fake the refusal where the staging folder is made
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
        target = tmp_path / "out"
    with pytest.raises(ArtifactError, match="Permission denied") as caught:
        executable.save(target)
    assert "not writable" in caught.value.hint
