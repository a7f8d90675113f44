"""Compiled artifacts: a directory with ``manifest.json``, the source model and the backend's payload.

```
model.onnxruntime-cpu/
  manifest.json     schema, versions, target, precision, signature, sha256 of every file
  model.onnx        the model that was compiled (lets a newer SDK rebuild it)
  payload/          what the backend wrote (ORT: the optimized model)
```

This is the only module that knows the layout: a backend writes into and reads
from the payload folder it is handed (``Executable._save_payload(payload_dir)``,
``Backend._load_payload(payload_dir, source_model, manifest, target)``).

Loading checks every file's hash (a tampered payload is refused) and asks the
backend whether the artifact fits this machine (SDK version, target); when it
does not, loading fails with the reason unless ``rebuild=True``, which
recompiles from the stored model (``Backend._rebuild``). ``portarun.load_compiled``
finds the backend the manifest names and hands it here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import atomic_directory
from ._version import __version__
from .errors import ArtifactCorruptError, ArtifactIncompatibleError, InvalidTargetError
from .model import Model
from .types import Precision, Target, TensorSpec

if TYPE_CHECKING:  # the layer above: artifact.py calls the backend it is handed, never imports it
    from .backend import Backend, Executable

SCHEMA = "portarun.artifact/1"
MANIFEST = "manifest.json"
SOURCE_MODEL = "model.onnx"
PAYLOAD = "payload"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(root).as_posix()] = file_sha256(path)
    return files


def save_artifact(executable: "Executable", path: Path) -> Path:
    with atomic_directory(path) as staging:
        executable.model.save(staging / SOURCE_MODEL)
        payload = staging / PAYLOAD
        payload.mkdir()
        extras = executable._save_payload(payload)
        manifest = {
            "schema": SCHEMA,
            "portarun_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model_name": executable.model.name,
            "model_sha256": executable.model.sha256,
            "backend": executable.backend.name,
            "sdk_version": executable.provenance.sdk_version,
            "target": str(executable.target),
            "precision": executable.precision.value,
            "options": executable.options,
            "inputs": [s.to_dict() for s in executable.inputs],
            "outputs": [s.to_dict() for s in executable.outputs],
            "provenance": executable.provenance.to_dict(),
            "payload": extras,
            "files": _hash_tree(staging),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


def is_artifact(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ArtifactCorruptError(f"artifact '{path}' does not exist", hint="check the path")
    manifest_path = path / MANIFEST
    if not path.is_dir() or not manifest_path.is_file():
        raise ArtifactCorruptError(f"'{path}' is not a portarun artifact (no {MANIFEST})",
                                   hint="create one with `portarun compile ... -o DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactCorruptError(f"cannot read {manifest_path}: {exc}", hint="recompile the artifact") from None
    if not isinstance(manifest, dict):
        raise ArtifactCorruptError(f"{manifest_path} is not a JSON object", hint="recompile the artifact")
    schema = manifest.get("schema")
    if schema != SCHEMA:
        raise ArtifactIncompatibleError(f"artifact '{path}' has schema {schema!r}; this portarun reads {SCHEMA}",
                                        hint="recompile it with this portarun version")
    for key in ("backend", "target", "precision", "files", "inputs", "outputs", "sdk_version"):
        if key not in manifest:
            raise ArtifactCorruptError(f"{manifest_path} lacks '{key}'", hint="recompile the artifact")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    if not isinstance(files, dict) or SOURCE_MODEL not in files:
        raise ArtifactCorruptError(f"artifact '{path}' lists no files", hint="recompile the artifact")
    root = path.resolve()
    for rel, digest in files.items():
        candidate = (root / rel).resolve()
        if root not in candidate.parents:
            raise ArtifactCorruptError(f"artifact '{path}' lists '{rel}', outside the artifact",
                                       hint="the manifest was tampered with; recompile")
        if not candidate.is_file():
            raise ArtifactCorruptError(f"artifact '{path}' is missing '{rel}'", hint="recompile the artifact")
        if file_sha256(candidate) != digest:
            raise ArtifactCorruptError(f"artifact '{path}': '{rel}' does not match its recorded sha256 "
                                       "(modified or corrupt)", hint="recompile the artifact")


@dataclass(frozen=True)
class Manifest:
    """An artifact's manifest as a backend reads it (``manifest.raw`` is the whole JSON object)."""

    path: Path  # the artifact directory, for messages and provenance
    raw: dict[str, Any]

    @property
    def backend(self) -> str:
        return self.raw["backend"]

    @property
    def target(self) -> Target:
        return Target.parse(self.raw["target"])

    @property
    def precision(self) -> Precision:
        return Precision.parse(self.raw["precision"])

    @property
    def sdk_version(self) -> str | None:
        return self.raw.get("sdk_version")

    @property
    def model_name(self) -> str | None:
        return self.raw.get("model_name")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.raw.get("options") or {})

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.raw.get("provenance") or {})

    @property
    def extras(self) -> dict[str, Any]:
        """What the backend's ``_save_payload`` returned."""
        return dict(self.raw.get("payload") or {})

    @property
    def payload_dir(self) -> Path:
        """The folder the backend's ``_save_payload`` wrote (a Triton export copies engines and IR from it)."""
        return self.path / PAYLOAD


def read_artifact(path: str | os.PathLike) -> Manifest:
    """The manifest of the artifact at ``path``, after checking every file against its sha256."""
    root = Path(path)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    return Manifest(root, manifest)


def source_model(manifest: Manifest) -> Model:
    """The model the artifact was compiled from, under the name it was compiled with.

    Its bytes were just checked against the manifest's sha256, so the checker does not run again.
    """
    model = Model.load(manifest.path / SOURCE_MODEL, check=False)
    model.name = manifest.model_name or model.name
    return model


def load_artifact(manifest: Manifest, backend: "Backend", target: Target | None = None, *,
                  rebuild: bool = False) -> "Executable":
    """Load a compiled artifact with ``backend`` (the one its manifest names); see the module docstring.

    ``target`` (already resolved from aliases) defaults to the one it was compiled for.
    """
    root = manifest.path
    saved_target = manifest.target
    wanted = target if target is not None else saved_target
    if wanted.backend != saved_target.backend:
        raise InvalidTargetError(f"artifact '{root}' was compiled for {saved_target}, not {wanted}",
                                 hint=f"compile the model for {wanted} instead")
    wanted = backend.resolve_target(wanted)
    reason = backend.artifact_incompatibility(manifest)
    if reason is None and wanted != backend.resolve_target(saved_target):
        reason = f"artifact was compiled for {saved_target}, not {wanted}"
    Precision.parse(manifest.raw["precision"])  # an unknown precision is refused before any work
    if reason is not None:
        if not rebuild:
            raise ArtifactIncompatibleError(f"cannot load '{root}': {reason}",
                                            hint="recompile it, or load with rebuild=True (--rebuild)")
        return backend._rebuild(root / PAYLOAD, source_model(manifest), manifest, wanted)
    executable = backend._load_payload(root / PAYLOAD, source_model(manifest), manifest, wanted)
    executable.model.name = manifest.model_name or executable.model.name
    executable.inputs = tuple(TensorSpec.from_dict(s) for s in manifest.raw["inputs"])
    executable.outputs = tuple(TensorSpec.from_dict(s) for s in manifest.raw["outputs"])
    return executable
