"""Triton ``config.pbtxt``: built from a signature, written as protobuf text, checked against the rules.

``model_config`` builds the config as nested dicts/lists (field names of Triton's ``ModelConfig``
protobuf), ``to_pbtxt`` writes protobuf text format without needing protobuf, and
``check_repository`` parses the file with the ``ModelConfig`` message that ``tritonclient`` ships
(``tritonclient.grpc.model_config_pb2``, extra ``triton``) and checks the model files and dims the
way Triton's backends document them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendUnavailableError
from ..types import TensorSpec, np_dtype

_TYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
          "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
          "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
          "bfloat16": "TYPE_BF16"}
ENUM_FIELDS = {"data_type", "kind"}  # written bare (TYPE_FP32, KIND_GPU), not quoted

# per platform/backend: the file Triton looks for in the version folder by default
DEFAULT_FILES = {"onnxruntime_onnx": "model.onnx", "openvino": "model.xml", "tensorrt_plan": "model.plan",
                 "python": "model.py"}
# the python backend's model.py compiles this file where Triton runs when the target is not on this machine
SHIPPED_MODEL = "model.onnx"


def triton_type(dtype: Any) -> str:
    return _TYPES[np_dtype(dtype).name]


def tensor_dims(spec: TensorSpec, *, fold_batch: bool) -> list[int]:
    """Dims for config.pbtxt: fixed ints, -1 for dynamic; the batch dim dropped when folded."""
    if spec.shape is None:
        return [-1]
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape]
    return dims[1:] if fold_batch else dims


def _tensor(spec: TensorSpec, fold_batch: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": spec.name, "data_type": triton_type(spec.dtype)}
    dims = tensor_dims(spec, fold_batch=fold_batch)
    if dims:
        entry["dims"] = dims
    else:  # a [batch] tensor: Triton needs a non-empty dims; reshape says the model sees no extra axis
        entry["dims"] = [1]
        entry["reshape"] = {"shape": []}
    return entry


def model_config(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *, platform: str | None,
                 backend: str, max_batch_size: int, instance_kind: str, instances: int,
                 gpus: Sequence[int] = (), preferred_batch_sizes: Sequence[int] = (),
                 queue_delay_us: int = 100, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    fold = max_batch_size > 0
    config: dict[str, Any] = {"name": name}
    if platform:
        config["platform"] = platform
    config["backend"] = backend
    config["max_batch_size"] = max_batch_size
    config["input"] = [_tensor(s, fold) for s in inputs]
    config["output"] = [_tensor(s, fold) for s in outputs]
    group: dict[str, Any] = {"count": instances, "kind": instance_kind}
    if gpus:
        group["gpus"] = list(gpus)
    config["instance_group"] = [group]
    if fold:
        batching: dict[str, Any] = {"max_queue_delay_microseconds": queue_delay_us}
        if preferred_batch_sizes:
            batching["preferred_batch_size"] = list(preferred_batch_sizes)
        config["dynamic_batching"] = batching
    config.update(extra or {})
    return config


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if key in ENUM_FIELDS:
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """Protobuf text format for a dict: lists become repeated fields, dicts sub-messages."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(key, v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(key, value)}")
    return "".join(line + "\n" for line in lines)


def parse_config(path: Path) -> Any:
    """``config.pbtxt`` parsed into Triton's ``ModelConfig`` protobuf (from tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailableError(f"checking a Triton config needs tritonclient's ModelConfig protobuf ({exc})",
                                      hint="pip install 'portarun[triton]'") from None
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def can_check() -> bool:
    """Whether tritonclient's ModelConfig protobuf is importable here (extra ``triton``)."""
    try:
        from tritonclient.grpc import model_config_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def check_repository(model_dir: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *,
                     name: str | None = None) -> list[str]:
    """Problems with ``model_dir`` (config and version folder) by Triton's documented rules; [] when none.

    ``name`` is the folder's final name when ``model_dir`` is still a staging folder.
    """
    from tritonclient.grpc import model_config_pb2 as pb

    config = parse_config(model_dir / "config.pbtxt")
    problems = []
    folder = name or model_dir.name
    if config.name != folder:
        problems.append(f"config name '{config.name}' differs from the folder name '{folder}'")
    kind = config.platform or config.backend
    version = model_dir / "1"
    wanted = [config.default_model_filename or DEFAULT_FILES.get(kind, "")]
    if config.cc_model_filenames:
        wanted = list(config.cc_model_filenames.values())
    if kind == "openvino":
        wanted.append(Path(wanted[0]).with_suffix(".bin").name)  # the IR's weights sit next to its .xml
    problems += [f"version folder lacks {name}" for name in wanted if not (version / name).is_file()]
    fold = config.max_batch_size > 0
    for declared, specs, what in ((config.input, inputs, "input"), (config.output, outputs, "output")):
        if [t.name for t in declared] != [s.name for s in specs]:
            problems.append(f"{what} names {[t.name for t in declared]} differ from the model's "
                            f"{[s.name for s in specs]}")
            continue
        for tensor, spec in zip(declared, specs):
            dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            if any(d < -1 or d == 0 for d in tensor.dims):
                problems.append(f"{what} '{tensor.name}': dims {list(tensor.dims)} must be positive or -1")
            if dims != tensor_dims(spec, fold_batch=fold):
                problems.append(f"{what} '{tensor.name}': dims {dims} do not match the model's "
                                f"{spec.shape_text()} (max_batch_size {config.max_batch_size})")
            if pb.DataType.Name(tensor.data_type) != triton_type(spec.dtype):
                problems.append(f"{what} '{tensor.name}': {pb.DataType.Name(tensor.data_type)} is not "
                                f"{triton_type(spec.dtype)}")
    if fold and any(size > config.max_batch_size for size in config.dynamic_batching.preferred_batch_size):
        problems.append("a preferred_batch_size exceeds max_batch_size")
    return problems
