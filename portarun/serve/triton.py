"""``portarun export-triton``: a model repository folder for NVIDIA Triton Inference Server.

Which Triton backend runs the model follows the target:

- ``onnxruntime:*``: the ``onnxruntime`` backend (``platform: "onnxruntime_onnx"``) with the ONNX
  model; ``onnxruntime:tensorrt`` adds the TensorRT ``gpu_execution_accelerator``,
  ``onnxruntime:openvino`` the OpenVINO ``cpu_execution_accelerator``; ``onnxruntime:cuda`` is the
  backend's default on ``KIND_GPU`` (CUDA execution provider).
- ``openvino:cpu``: the ``openvino`` backend with the OpenVINO IR that portarun's OpenVINO backend writes.
- ``tensorrt:*``: ``platform: "tensorrt_plan"`` with the engine from a portarun artifact, filed under
  ``cc_model_filenames`` for the compute capability it was built for.
- anything else (``xla:*``, ``reference``), or ``python_backend=True``: Triton's ``python`` backend
  with a ``model.py`` that runs a portarun artifact.

The repository is written atomically and checked before it is committed (see ``triton_config``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .._atomic import atomic_directory
from ..artifact import Manifest, is_artifact, read_artifact, source_model
from ..errors import CheckFailedError, UnsupportedError, UsageError
from ..model import Model, quantization_of
from ..registry import get_backend
from ..types import Precision, Target, TensorSpec
from . import triton_config
from .batching import batch_dim
from .spec import default_name

PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
DEFAULT_MAX_BATCH = 8
_ORT_ACCELERATORS = {"cpu": ("KIND_CPU", None), "cuda": ("KIND_GPU", None),
                     "tensorrt": ("KIND_GPU", "tensorrt"), "openvino": ("KIND_CPU", "openvino")}


@dataclass
class TritonExport:
    """What was written: the model folder, its config text and which Triton backend runs it."""

    path: Path
    backend: str
    config_text: str
    max_batch_size: int
    checked: bool  # False when tritonclient (extra ``triton``) is missing and the config was not parsed back


@dataclass
class _Source:
    """The model to export: from a file/built-in, or from a portarun artifact (then ``manifest`` is set)."""

    model: Model
    target: Target
    precision: Precision
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    manifest: Manifest | None = None  # set when exporting a portarun artifact


def _resolve(model_or_artifact: Any, target: str | None, precision: str) -> _Source:
    from .. import api

    if not isinstance(model_or_artifact, Model) and is_artifact(model_or_artifact):
        manifest = read_artifact(model_or_artifact)
        return _Source(source_model(manifest), manifest.target, manifest.precision,
                       tuple(TensorSpec.from_dict(s) for s in manifest.raw["inputs"]),
                       tuple(TensorSpec.from_dict(s) for s in manifest.raw["outputs"]), manifest)
    if target is None:
        raise UsageError("a model needs a target (e.g. -t onnxruntime:cuda); an artifact carries its own")
    parsed = Target.parse(target)
    backend = get_backend(parsed.backend)
    # the device need not exist here: the repository is for the machine that runs Triton
    parsed = Target(parsed.backend, parsed.device or backend.default_device, parsed.index)
    model = api.load(model_or_artifact)
    return _Source(model, parsed, Precision.parse(precision), model.inputs, model.outputs)


def _quantized_model(source: _Source) -> Model:
    """The ONNX model Triton's onnxruntime backend runs: QDQ for quantized precisions, as compile would."""
    if source.precision.is_quantized and quantization_of(source.model) is None:
        from ..quantize import quantize

        return quantize(source.model, source.precision).model
    if source.precision.is_float and source.precision != Precision.FP32 and source.target.device != "tensorrt":
        raise UnsupportedError(f"Triton's onnxruntime backend runs the ONNX model as it is: {source.precision} "
                               f"needs the TensorRT accelerator", backend="onnxruntime",
                               hint=f"export for onnxruntime:tensorrt -p {source.precision}, or give a model "
                                    f"already in {source.precision}")
    return source.model


def _onnxruntime(source: _Source, version: Path) -> tuple[dict[str, Any], str]:
    device = source.target.device
    if device not in _ORT_ACCELERATORS:
        raise UnsupportedError(f"Triton's onnxruntime backend has no execution provider for {source.target}",
                               backend="onnxruntime",
                               hint="export for onnxruntime:cpu, :cuda, :tensorrt or :openvino, or use "
                                    "--python-backend")
    _quantized_model(source).save(version / triton_config.DEFAULT_FILES["onnxruntime_onnx"])
    kind, accelerator = _ORT_ACCELERATORS[device]
    extra: dict[str, Any] = {}
    if accelerator == "tensorrt":
        mode = {"fp16": "FP16", "int8": "INT8"}.get(source.precision.value, "FP32")
        extra["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": mode}]}]}}
    elif accelerator == "openvino":
        extra["optimization"] = {"execution_accelerators": {"cpu_execution_accelerator": [{"name": "openvino"}]}}
    return {"platform": "onnxruntime_onnx", "backend": "onnxruntime", "instance_kind": kind, "extra": extra}, \
        "onnxruntime"


def _artifact_payload(source: _Source) -> tuple[Path, dict[str, Any]]:
    return source.manifest.payload_dir, source.manifest.extras


def _openvino(source: _Source, version: Path) -> tuple[dict[str, Any], str]:
    if source.target.device != "cpu":
        raise UnsupportedError(f"Triton's openvino backend runs on CPU; {source.target} is not", backend="openvino",
                               hint="export for openvino:cpu, or use --python-backend to run portarun there")
    if source.manifest is None:  # portarun's OpenVINO backend writes the IR (NNCF-compressed when quantized)
        from .. import api

        with tempfile.TemporaryDirectory() as tmp:
            executable = api.compile(source.model, str(source.target), source.precision)
            with executable:
                root = executable.save(Path(tmp) / "artifact")
            ir_source = _Source(source.model, source.target, source.precision, source.inputs, source.outputs,
                                read_artifact(root))
            return _openvino(ir_source, version)
    payload, extras = _artifact_payload(source)
    xml = payload / extras.get("ir", "model.xml")
    shutil.copyfile(xml, version / "model.xml")
    shutil.copyfile(xml.with_suffix(".bin"), version / "model.bin")
    # OpenVINO computes in bf16 by default on CPUs that have it; fp32 must say so to match portarun's runs
    hint = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}.get(source.precision.value)
    extra = {"parameters": [{"key": "INFERENCE_PRECISION_HINT", "value": {"string_value": hint}}]} if hint else {}
    return {"platform": None, "backend": "openvino", "instance_kind": "KIND_CPU", "extra": extra}, "openvino"


def _tensorrt(source: _Source, version: Path) -> tuple[dict[str, Any], str]:
    if source.manifest is None:
        raise UsageError("a TensorRT engine is built for one GPU: export a tensorrt artifact",
                         hint=f"portarun compile MODEL -t {source.target} -o DIR, then export-triton DIR")
    payload, extras = _artifact_payload(source)
    engine = payload / extras.get("engine", "model.plan")
    capability = (extras.get("engine_key") or {}).get("compute_capability")
    extra: dict[str, Any] = {}
    if capability:
        filename = f"model_sm{str(capability).replace('.', '')}.plan"
        extra["cc_model_filenames"] = [{"key": str(capability), "value": filename}]
    else:
        filename = "model.plan"
    shutil.copyfile(engine, version / filename)
    settings: dict[str, Any] = {"platform": "tensorrt_plan", "backend": "tensorrt", "instance_kind": "KIND_GPU",
                                "extra": extra}
    profiles = extras.get("profiles") or {}
    if profiles:  # the engine takes batches up to its optimization profile's largest first dim
        settings["max_batch_limit"] = min(int(triple[2][0]) for triple in profiles.values())
    return settings, "tensorrt"


def _python(source: _Source, version: Path) -> tuple[dict[str, Any], str]:
    shutil.copyfile(PYTHON_MODEL, version / "model.py")
    if source.manifest is not None:
        shutil.copytree(source.manifest.path, version / "artifact")
    else:
        from .. import api

        backend = get_backend(source.target.backend)
        if backend.supports(source.model, source.target, source.precision):
            with api.compile(source.model, str(source.target), source.precision) as executable:
                executable.save(version / "artifact")
        else:  # the target is not here: ship the model, compiled by model.py where Triton runs
            source.model.save(version / triton_config.SHIPPED_MODEL)
            (version / "portarun.json").write_text(json.dumps(
                {"target": str(source.target), "precision": source.precision.value, "options": {}}, indent=2))
    kind = "KIND_CPU" if source.target.device in (None, "cpu") else "KIND_GPU"
    return {"platform": None, "backend": "python", "instance_kind": kind, "extra": {}}, "python"


def preferred_batch_sizes(report: str | os.PathLike, max_batch_size: int) -> list[int]:
    """Batch sizes from a ``portarun bench --json`` sweep that raise throughput over every smaller one."""
    try:
        rows = json.loads(Path(report).read_text())["rows"]
        points = sorted((int(r["batch"]), float(r["per_second"])) for r in rows)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read a bench sweep from '{report}': {exc}",
                         hint="write one with `portarun bench MODEL -t TARGET --batch 1,2,4,8 --json FILE`") from None
    chosen, best = [], 0.0
    for batch, per_second in points:
        if batch <= max_batch_size and per_second > best * 1.05:  # 5 %: below that it is noise, not a gain
            chosen.append(batch)
            best = per_second
    return [b for b in chosen if b > 1] or chosen[-1:]


def _max_batch(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], asked: int | None) -> int:
    batched = batch_dim(inputs, outputs) is not None
    if asked is None:
        return DEFAULT_MAX_BATCH if batched else 0
    if asked > 0 and not batched:
        raise UsageError(f"--max-batch-size {asked}: the model's first dim is not a batch dim shared by every "
                         f"input and output", hint="use --max-batch-size 0 (Triton then sends full shapes)")
    return asked


def _fit_engine(batch: int, limit: int | None, *, asked: int | None) -> int:
    """``max_batch_size`` within what a prebuilt engine accepts (the default shrinks; an explicit ask fails)."""
    if limit is None or batch <= limit:
        return batch
    if asked is not None:
        raise UsageError(f"--max-batch-size {asked}: the TensorRT engine was built for batches up to {limit}",
                         hint=f"use --max-batch-size {limit} or less, or rebuild the engine with a larger profile")
    return limit


def export_triton(model_or_artifact: Any, repo: str | os.PathLike, target: str | None = None,
                  precision: str = "fp32", *, name: str | None = None, max_batch_size: int | None = None,
                  instances: int = 1, from_bench: str | os.PathLike | None = None,
                  python_backend: bool = False) -> TritonExport:
    """Write ``repo/NAME/config.pbtxt`` and ``repo/NAME/1/...`` for Triton; returns what was written."""
    source = _resolve(model_or_artifact, target, precision)
    name = name or (source.manifest.model_name if source.manifest else None) or default_name(model_or_artifact)
    if instances < 1:
        raise UsageError(f"instances must be at least 1, got {instances}")
    batch = _max_batch(source.inputs, source.outputs, max_batch_size)
    preferred = preferred_batch_sizes(from_bench, batch) if from_bench and batch else []
    writers = {"onnxruntime": _onnxruntime, "openvino": _openvino, "tensorrt": _tensorrt}
    writer = _python if python_backend else writers.get(source.target.backend, _python)
    with atomic_directory(Path(repo) / name) as staging:
        version = staging / "1"
        version.mkdir()
        settings, backend = writer(source, version)
        batch = _fit_engine(batch, settings.get("max_batch_limit"), asked=max_batch_size)
        on_gpu = settings["instance_kind"] == "KIND_GPU" and source.target.index is not None
        gpus = [source.target.index] if on_gpu else []
        config = triton_config.model_config(
            name, source.inputs, source.outputs, platform=settings["platform"], backend=settings["backend"],
            max_batch_size=batch, instance_kind=settings["instance_kind"], instances=instances, gpus=gpus,
            preferred_batch_sizes=preferred, extra=settings["extra"])
        text = f"# written by portarun export-triton for {source.target} at {source.precision}\n" \
               + triton_config.to_pbtxt(config)
        (staging / "config.pbtxt").write_text(text)
        checked = triton_config.can_check()
        problems = triton_config.check_repository(staging, source.inputs, source.outputs, name=name) \
            if checked else []
        if problems:
            raise CheckFailedError(f"the Triton repository for '{name}' breaks Triton's rules: "
                                   + "; ".join(problems), hint="this is a portarun bug; please report it")
    return TritonExport(Path(repo) / name, backend, text, batch, checked)
