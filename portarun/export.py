"""PyTorch -> ONNX, validated on ONNX Runtime before anyone relies on it.

``export(module, example_inputs, dynamic_axes=...)`` runs ``torch.onnx.export(dynamo=True)``
(torch.export-based), or the TorchScript exporter when asked (``exporter="torchscript"``)
or when the dynamo exporter fails (``exporter="auto"``: the fallback is announced with a
warning and recorded in the model's metadata). The exported model is then run on
onnxruntime:cpu with the example inputs and compared with PyTorch's own outputs; a
mismatch raises ``CheckFailedError`` with the max error.

torch is imported inside the functions: ``import portarun`` never imports it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .compare import Comparison, Tolerance, compare
from ._callable import make_module_callable
from .errors import CheckFailedError, ExportError, ModelNotFoundError, UsageError, first_line
from .model import PROTOBUF_LIMIT, Model

EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = Tolerance(rtol=1e-3, atol=1e-4)
TORCH_HINT = "pip install 'portarun[torch]' (torch==2.13.0 and onnxscript)"
METADATA_KEY = "portarun.export"

DynamicAxes = Mapping[str, Mapping[int, str]]


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ExportError(f"exporting from PyTorch needs torch ({exc})", hint=TORCH_HINT) from None
    return torch


# --- the public entry point ------------------------------------------------------------
def export(module: Any, example_inputs: Mapping[str, Any] | Sequence[Any] | Any, *,
           input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
           dynamic_axes: DynamicAxes | None = None, opset: int = DEFAULT_OPSET, exporter: str = "auto",
           validate: bool = True, tolerance: Tolerance = DEFAULT_TOLERANCE, name: str | None = None) -> Model:
    """Export ``module`` to a validated ONNX Model.

    ``example_inputs``: a mapping of input name -> tensor/array (passed positionally in that
    order, the names become the ONNX input names), or a tuple of them (then ``input_names``
    names them, default ``input_0``...). ``dynamic_axes``: ``{input or output name: {axis: dim name}}``.
    """
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter '{exporter}'", hint=f"choose one of {', '.join(EXPORTERS)}")
    torch = _torch()
    names, args = _normalize_inputs(example_inputs, input_names)
    dynamic_axes = {k: {int(a): str(d) for a, d in v.items()} for k, v in (dynamic_axes or {}).items()}
    if hasattr(module, "eval"):
        module.eval()
    with torch.no_grad():
        reference = _flatten(module(*args))
    output_names = list(output_names) if output_names else (["output"] if len(reference) == 1 else
                                                            [f"output_{i}" for i in range(len(reference))])
    if len(output_names) != len(reference):
        raise UsageError(f"{len(output_names)} output names given, the module returns {len(reference)} tensors")
    unknown = [k for k in dynamic_axes if k not in names and k not in output_names]
    if unknown:
        raise UsageError(f"dynamic axes name unknown tensor(s) {', '.join(unknown)}",
                         hint=f"inputs: {', '.join(names)}; outputs: {', '.join(output_names)}")
    for key, axes in dynamic_axes.items():
        if key in names:
            rank = args[names.index(key)].dim()
            bad = [a for a in axes if not -rank <= a < rank]
            if bad:
                raise UsageError(f"dynamic axis {bad[0]} of input '{key}' is out of range for rank {rank}")

    info: dict[str, Any] = {"opset": opset, "torch": torch.__version__}
    large = _parameter_bytes(module) > PROTOBUF_LIMIT // 2
    with tempfile.TemporaryDirectory(prefix="portarun-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        if exporter in ("auto", "dynamo"):
            try:
                _export_dynamo(torch, module, args, names, output_names, dynamic_axes, opset, path, large)
                info["exporter"] = "dynamo"
            except Exception as exc:  # noqa: BLE001 - any exporter failure is reported or falls back
                reason = first_line(exc, 400)
                if exporter == "dynamo":
                    raise ExportError(f"torch.onnx.export(dynamo=True) failed: {reason}",
                                      hint="try exporter='torchscript' (--exporter torchscript)") from exc
                warnings.warn(f"portarun.export: the dynamo exporter failed ({reason}); "
                              "falling back to the TorchScript exporter", RuntimeWarning, stacklevel=2)
                info["exporter"] = "torchscript"
                info["dynamo_error"] = reason
        if info.get("exporter") != "dynamo":
            try:
                _export_torchscript(torch, module, args, names, output_names, dynamic_axes, opset, path, large)
            except Exception as exc:  # noqa: BLE001
                raise ExportError(f"the TorchScript exporter failed: {first_line(exc, 400)}"
                                  + (f" (the dynamo exporter failed first: {info['dynamo_error']})"
                                     if "dynamo_error" in info else ""),
                                  hint="simplify the module's forward or export with a newer opset") from exc
            info["exporter"] = "torchscript"
        model = Model.load(path, check=True)
        model.name = name or type(module).__name__
        if validate:  # while the file exists: a model over 2 GiB reaches ONNX Runtime by its path
            comparison = validate_export(model, [a.detach().cpu().numpy() for a in args], reference, names,
                                         output_names, tolerance)
            info["max_abs_error"] = comparison.max_abs
    model.path = None  # the weights are in memory now; the temporary file is gone
    _set_metadata(model, info)
    return model


def validate_export(model: Model, inputs: Sequence[np.ndarray], expected: Sequence[np.ndarray],
                    input_names: Sequence[str], output_names: Sequence[str],
                    tolerance: Tolerance = DEFAULT_TOLERANCE) -> Comparison:
    """Run ``model`` on onnxruntime:cpu and compare with ``expected``; raise CheckFailedError on mismatch."""
    from .registry import get_backend  # a float model at fp32: the backend's own compile is portarun.compile's

    onnx_inputs = [spec.name for spec in model.inputs]
    feeds = {n: a for n, a in zip(input_names, inputs) if n in onnx_inputs}
    # Inputs the exporter dropped (unused by the graph) are not fed; missing ones are an export bug.
    missing = [n for n in onnx_inputs if n not in feeds]
    if missing:
        raise ExportError(f"exported model has inputs {', '.join(missing)} that match no example input",
                          hint=f"example inputs were: {', '.join(input_names)}")
    with get_backend("onnxruntime").compile(model, "onnxruntime:cpu", "fp32") as executable:
        outputs = executable.run(feeds)
    actual = {name: outputs[spec.name] for name, spec in zip(output_names, model.outputs)}
    comparison = compare(actual, dict(zip(output_names, expected)), tolerance)
    if not comparison:
        worst = comparison.worst
        raise CheckFailedError(
            f"exported model does not match PyTorch on onnxruntime:cpu: output '{worst.name}' max abs error "
            f"{worst.max_abs:.3g} (max rel {worst.max_rel:.3g}, {worst.within:.1%} of elements within "
            f"rtol={tolerance.rtol:g}, atol={tolerance.atol:g})",
            hint="the module may behave differently under export (Python control flow on values, "
                 "is_in_onnx_export); try exporter='torchscript', or loosen the tolerance if the error is rounding")
    return comparison


def export_info(model: Model) -> dict[str, Any]:
    """What ``export`` recorded: exporter used, fallback reason, opset, max error."""
    for prop in model.proto.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}


# --- the exporters -----------------------------------------------------------------------
@contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, deprecations); errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_dynamo(torch, module, args, names, output_names, dynamic_axes, opset, path: Path, large: bool) -> None:
    # Positional dynamic shapes in argument order; string names become Dim.DYNAMIC and rename the axes.
    dynamic_shapes = _group_varargs(module, [dict(dynamic_axes.get(n, {})) or None for n in names]) \
        if dynamic_axes else None
    with _quiet_torch():
        program = torch.onnx.export(module, tuple(args), input_names=list(names), output_names=list(output_names),
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True,
                                    verbose=False)
        program.save(str(path), external_data=large)


def _group_varargs(module, shapes: list) -> tuple:
    """torch.export wants the entries for ``*args`` of forward grouped in one tuple."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return tuple(shapes)
    fixed = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) and len(shapes) > len(fixed):
        return tuple(shapes[:len(fixed)]) + (tuple(shapes[len(fixed):]),)
    return tuple(shapes)


def _export_torchscript(torch, module, args, names, output_names, dynamic_axes, opset, path: Path,
                        large: bool) -> None:
    with _quiet_torch():
        torch.onnx.export(module, tuple(args), str(path), input_names=list(names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes or None, opset_version=opset, dynamo=False,
                          do_constant_folding=True)


# --- helpers ---------------------------------------------------------------------------------
def _normalize_inputs(example_inputs, input_names) -> tuple[list[str], list[Any]]:
    torch = _torch()
    if isinstance(example_inputs, Mapping):
        names, values = list(example_inputs), list(example_inputs.values())
    else:
        values = list(example_inputs) if isinstance(example_inputs, (list, tuple)) else [example_inputs]
        names = list(input_names) if input_names else [f"input_{i}" for i in range(len(values))]
    if len(names) != len(values):
        raise UsageError(f"{len(names)} input names for {len(values)} example inputs")
    tensors = []
    for name, value in zip(names, values):
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"example input '{name}' must be a torch tensor or numpy array, "
                             f"got {type(value).__name__}")
        tensors.append(value)
    return names, tensors


def _flatten(value: Any) -> list[np.ndarray]:
    """Module outputs (tensor, tuple, list, dict, HF ModelOutput) as a flat list of arrays, in order."""
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, Mapping):
        return [a for v in value.values() if v is not None for a in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _flatten(v)]
    raise ExportError(f"cannot export a module output of type {type(value).__name__}",
                      hint="return tensors, or tuples/lists/dicts of tensors")


def _parameter_bytes(module: Any) -> int:
    try:
        tensors = list(module.parameters()) + list(module.buffers())
    except AttributeError:
        return 0
    return sum(t.numel() * t.element_size() for t in tensors)


def _set_metadata(model: Model, info: dict[str, Any]) -> None:
    props = model.proto.metadata_props
    for i, prop in enumerate(props):
        if prop.key == METADATA_KEY:
            del props[i]
            break
    entry = props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info, sort_keys=True)


# --- what the CLI parses --------------------------------------------------------------------
_SHAPE_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]*)=(?P<shape>\d+(?:x\d+)*|scalar)(?::(?P<dtype>\w+))?$")
_DYNAMIC_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]*):(?P<axis>-?\d+)=(?P<dim>[A-Za-z_]\w*)$")
_DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool"}


def parse_example_input(spec: str) -> tuple[str, tuple[int, ...], str]:
    """``x=1x3x224x224:float32`` -> ("x", (1, 3, 224, 224), "float32"); dtype defaults to float32."""
    match = _SHAPE_RE.match(spec.strip())
    if not match:
        raise UsageError(f"malformed example input '{spec}'",
                         hint="write NAME=DxDx...:DTYPE, e.g. x=1x3x224x224:float32 or ids=1x16:int64")
    dtype = match.group("dtype") or "float32"
    if dtype not in _DTYPES:
        raise UsageError(f"example input '{spec}': unknown dtype '{dtype}'", hint=f"one of {', '.join(sorted(_DTYPES))}")
    shape_text = match.group("shape")
    shape = () if shape_text == "scalar" else tuple(int(d) for d in shape_text.split("x"))
    return match.group("name"), shape, dtype


def parse_dynamic_axis(spec: str) -> tuple[str, int, str]:
    """``x:0=batch`` -> ("x", 0, "batch")."""
    match = _DYNAMIC_RE.match(spec.strip())
    if not match:
        raise UsageError(f"malformed dynamic axis '{spec}'", hint="write NAME:AXIS=DIM_NAME, e.g. x:0=batch")
    return match.group("name"), int(match.group("axis")), match.group("dim")


def example_tensors(specs: Sequence[str], *, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded example inputs from ``NAME=SHAPE:DTYPE`` specs (floats ~ N(0,1), ints in [0, 100))."""
    rng = np.random.default_rng(seed)
    result: dict[str, np.ndarray] = {}
    for spec in specs:
        name, shape, dtype = parse_example_input(spec)
        if name in result:
            raise UsageError(f"example input '{name}' given twice")
        if dtype == "bool":
            result[name] = rng.integers(0, 2, size=shape).astype(bool)
        elif dtype.startswith(("int", "uint")):
            result[name] = rng.integers(0, 100, size=shape).astype(dtype)
        else:
            array = rng.standard_normal(shape).astype(np.float32)
            result[name] = array.astype(dtype) if dtype != "bfloat16" else array
    return result


def load_factory(spec: str) -> Callable[[], Any]:
    """``path/to/file.py:build_model`` -> the callable ``build_model`` from that file."""
    if ":" not in spec:
        raise UsageError(f"'{spec}' does not name a factory", hint="write FILE.py:FUNCTION, e.g. my_models.py:build_model")
    file_text, _, attr = spec.rpartition(":")
    path = Path(file_text)
    if not path.is_file():
        raise ModelNotFoundError(f"module file '{path}' not found", hint="give the path to a .py file that defines the factory")
    module_name = f"portarun_user_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"'{path}' cannot be imported as a Python module", hint="give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))  # let the file import its neighbours
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed to import
        sys.modules.pop(module_name, None)
        raise ExportError(f"importing '{path}' failed: {type(exc).__name__}: {first_line(exc, 400)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UsageError(f"'{path}' has no callable '{attr}'",
                         hint=f"callables there: {', '.join(public) or 'none'}")
    return factory


# portarun.export(module, inputs) calls ``export``; portarun.export.export_info still works
make_module_callable(__name__, export)
