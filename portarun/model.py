"""Model: an ONNX ModelProto plus its signature, loaded defensively.

Loading treats the file as untrusted: it must parse as an ONNX model, external
data must stay inside the model's folder, the opset must be one the installed
onnx knows, and ``onnx.checker`` plus strict shape inference must accept it.
Each failure is a ``ModelError`` subclass that says what to fix.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx import external_data_helper

from .errors import (
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    ModelValidationError,
    UnsafeModelError,
    UnsupportedOpsetError,
    first_line,
)
from . import model_checks
from .model_checks import iter_graphs
from .types import TensorSpec

# Protobuf cannot serialize a message over 2 GiB; bigger models keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1
STANDARD_DOMAINS = ("", "ai.onnx")  # two spellings of ONNX's default operator-set domain


def onnx_domain(domain: str) -> str:
    """An operator-set domain in one spelling: "" for ONNX's default domain ("" or "ai.onnx")."""
    return "" if domain in STANDARD_DOMAINS else domain


def opset_versions(opset_import) -> dict[str, int]:
    """``{domain: version}`` of a model's or function's ``opset_import``, domains as ``onnx_domain`` spells them."""
    return {onnx_domain(o.domain): o.version for o in opset_import}


def _iter_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    for g in iter_graphs(graph):
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def _external_location(tensor: onnx.TensorProto) -> tuple[str, int, int | None]:
    return model_checks.external_location(tensor)


def _check_external_data(proto: onnx.ModelProto, base_dir: Path) -> None:
    """Refuse external data that escapes ``base_dir`` or points past a file's end."""
    base = base_dir.resolve()
    # model-local functions hold tensors too (Constant values): the same rules apply to them
    for tensor in itertools.chain(_iter_tensors(proto.graph), model_checks.iter_function_tensors(proto)):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location, offset, length = _external_location(tensor)
        if not location:
            raise ModelValidationError(f"tensor '{tensor.name}' has external data without a location")
        rel = Path(location)
        if rel.is_absolute() or location.startswith(("/", "\\")) or ".." in Path(os.path.normpath(location)).parts:
            raise UnsafeModelError(
                f"tensor '{tensor.name}' points its external data at '{location}', outside the model's folder",
                hint="external data must be a relative path inside the model's folder; re-save the model",
            )
        resolved = model_checks.resolve_inside(base, location, tensor.name)
        if resolved != base and base not in resolved.parents:
            raise UnsafeModelError(
                f"tensor '{tensor.name}' external data '{location}' resolves to {resolved}, outside {base}",
                hint="external data (and links to it) must stay inside the model's folder",
            )
        if not model_checks.is_file(resolved, tensor.name):
            raise ModelNotFoundError(
                f"external data file '{location}' for tensor '{tensor.name}' not found next to the model",
                hint=f"copy it into {base}",
            )
        size = resolved.stat().st_size
        if offset < 0 or (length is not None and (length < 0 or offset + length > size)) or offset > size:
            raise ModelValidationError(
                f"tensor '{tensor.name}' reads bytes {offset}..{offset + (length or 0)} of '{location}', "
                f"which has {size} bytes",
                hint="the external data file is truncated or does not belong to this model",
            )


def _check_opsets(proto: onnx.ModelProto, where: str) -> None:
    known = onnx.defs.onnx_opset_version()
    if proto.ir_version > onnx.IR_VERSION:
        raise UnsupportedOpsetError(
            f"{where} uses ONNX IR version {proto.ir_version}; the installed onnx {onnx.__version__} "
            f"reads up to {onnx.IR_VERSION}",
            hint="upgrade onnx (pip install -U onnx) or re-export with an older IR version",
        )
    for opset in proto.opset_import:
        if not onnx_domain(opset.domain) and opset.version > known:
            raise UnsupportedOpsetError(
                f"{where} needs ONNX opset {opset.version}; the installed onnx {onnx.__version__} "
                f"supports up to opset {known}",
                hint=f"upgrade onnx (pip install -U onnx) or re-export with --opset {known} or lower",
            )


# ONNX Runtime registers these contrib kernels in the ONNX domain, and its transformer optimizer writes
# them there (LayerNormalization also below opset 17, where onnx has none): onnx.checker rejects them.
_ORT_ONNX_DOMAIN_OPS = {"LayerNormalization": 17, "SimplifiedLayerNormalization": None}


def _ort_onnx_domain_ops_moved(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model to check: ORT's ONNX-domain contrib ops that onnx does not know moved to com.microsoft
    (the model itself is unchanged; backends that cannot run them say so by name)."""
    version = next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), 1)
    foreign = {op for op, since in _ORT_ONNX_DOMAIN_OPS.items() if since is None or version < since}
    if not any(n.op_type in foreign and n.domain in STANDARD_DOMAINS for n in proto.graph.node):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        if node.op_type in foreign and node.domain in STANDARD_DOMAINS:
            node.domain = "com.microsoft"
    if not any(o.domain == "com.microsoft" for o in copy.opset_import):
        copy.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return copy


def _dims(type_proto: onnx.TypeProto) -> tuple | None:
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


# Exporters write a dynamic axis as a number: paddle2onnx and older tf2onnx use -1, some use 0.
# ONNX Runtime reads both as dynamic; so does portarun (an unnamed symbolic dim).
DYNAMIC_DIM_VALUES = (-1, 0)
UNNAMED_DIM_PARAMS = ("?",)


def unmark_dynamic_dims(graph: onnx.GraphProto) -> list[str]:
    """Rewrite dims written as -1/0 (or named '?') in ``graph``'s inputs, outputs and value_info as unnamed dims
    (in place); return ``"tensor:axis"`` for each one rewritten."""
    found = []
    for group in (graph.input, graph.output, graph.value_info):
        for value_info in group:
            if not value_info.type.HasField("tensor_type") or not value_info.type.tensor_type.HasField("shape"):
                continue
            for axis, dim in enumerate(value_info.type.tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value in DYNAMIC_DIM_VALUES:
                    dim.ClearField("dim_value")
                    found.append(f"{value_info.name}:{axis}")
                elif dim.HasField("dim_param") and dim.dim_param in UNNAMED_DIM_PARAMS:
                    # paddle2onnx writes '?' for every unknown axis: not one dim shared by all of them
                    dim.ClearField("dim_param")
                    found.append(f"{value_info.name}:{axis}")
    return found


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    type_proto = value_info.type
    if type_proto.HasField("tensor_type"):
        return TensorSpec(value_info.name, onnx.helper.tensor_dtype_to_np_dtype(type_proto.tensor_type.elem_type)
                          if type_proto.tensor_type.elem_type else np.dtype(object), _dims(type_proto))
    # sequences, optionals, maps: fed as Python objects, not checked element-wise
    return TensorSpec(value_info.name, np.dtype(object), None)


@dataclass
class ModelStats:
    nodes: int
    op_histogram: dict[str, int]
    parameters: int
    parameter_bytes: int


class Model:
    """An ONNX model with its input/output signature. Create with ``Model.load`` or ``Model.from_proto``."""

    def __init__(self, proto: onnx.ModelProto, *, path: Path | None = None, name: str | None = None):
        self.proto = proto
        self.path = path
        self.name = name or (path.stem if path else (proto.graph.name or "model"))
        # Dynamic axes written as -1/0 become unnamed dims here, so the signature, feed checks and
        # every backend (which all compile from this proto) read them as ONNX Runtime does.
        self.dynamic_dims_written_as_numbers: list[str] = unmark_dynamic_dims(proto.graph)
        self.notes: list[str] = []  # what loading found odd but accepted; compile copies it into provenance
        if self.dynamic_dims_written_as_numbers:
            self.notes.append("dynamic dims written as -1/0/'?' read as unnamed dims: "
                              + ", ".join(self.dynamic_dims_written_as_numbers))
        initializer_names = {init.name for init in proto.graph.initializer}
        # IR < 4 listed initializers among the inputs; they are weights, not feeds.
        self.inputs: tuple[TensorSpec, ...] = tuple(
            _spec(vi) for vi in proto.graph.input if vi.name not in initializer_names
        )
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(vi) for vi in proto.graph.output)

    # -- construction --------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, check: bool = True) -> "Model":
        try:
            return cls._load(path, check=check)
        except ModelError:
            raise
        except (Exception, RecursionError) as exc:  # untrusted input: whatever the parser trips on is ours to name
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load '{os.fsdecode(path) if isinstance(path, bytes) else path}': "
                                 f"{type(exc).__name__}: {text[:200]}",
                                 hint="the file is malformed; re-export it (onnx.checker.check_model tells more)") \
                from None

    @classmethod
    def _load(cls, path: str | os.PathLike, *, check: bool) -> "Model":
        source = Path(path)
        if not source.exists():
            raise ModelNotFoundError(f"model file '{source}' does not exist", hint="check the path")
        if source.is_dir():
            # portarun.load names a compiled artifact as such (only portarun.artifact knows its layout)
            raise ModelLoadError(f"'{source}' is a directory, not an ONNX file",
                                 hint="a compiled artifact loads with portarun.load_compiled() or `portarun run`")
        size = source.stat().st_size
        if size == 0:
            raise ModelLoadError(f"'{source}' is empty", hint="re-export or re-download the model")
        if size > PROTOBUF_LIMIT:
            raise ModelLoadError(f"'{source}' is {size} bytes, over protobuf's 2 GiB limit",
                                 hint="save large models with external data (onnx.save_model(..., save_as_external_data=True))")
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(source.read_bytes())
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"'{source}' is not a valid ONNX model: {exc}",
                                 hint="the file is corrupt or truncated, or not an ONNX file") from None
        if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.opset_import:
            raise ModelLoadError(f"'{source}' parses but holds no ONNX model (no graph, IR version or opset)",
                                 hint="the file is not an ONNX model")
        _check_opsets(proto, f"'{source}'")
        model_checks.check_types_and_sizes(proto, f"'{source}'")
        _check_external_data(proto, source.parent)
        try:
            external_data_helper.load_external_data_for_model(proto, str(source.parent))
        except (OSError, ValueError, TypeError, RuntimeError, onnx.checker.ValidationError) as exc:
            raise ModelLoadError(f"cannot read external data of '{source}': {exc}") from None
        model = cls(proto, path=source)
        if check:
            model.validate()
        return model

    @classmethod
    def from_proto(cls, proto: onnx.ModelProto, *, name: str | None = None, check: bool = True) -> "Model":
        _check_opsets(proto, f"model '{name or proto.graph.name}'")
        model_checks.check_types_and_sizes(proto, f"model '{name or proto.graph.name}'")
        model = cls(proto, name=name)
        if check:
            model.validate()
        return model

    def validate(self) -> None:
        """onnx.checker plus strict shape inference; raises ModelValidationError."""
        where = f"'{self.path}'" if self.path else f"model '{self.name}'"
        try:
            if self.byte_size > PROTOBUF_LIMIT:
                if self.path is None:
                    raise ModelValidationError(f"{where} is over 2 GiB and has no file to check",
                                               hint="save it with external data first")
                onnx.checker.check_model(str(self.path))
            else:
                checked = _ort_onnx_domain_ops_moved(self.proto)
                onnx.checker.check_model(checked)
                self._infer_shapes_strictly(checked)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError,
                # the checker decodes strings as UTF-8 and converts types: a malformed file trips those too
                UnicodeDecodeError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise ModelValidationError(f"{where} fails ONNX validation: {first_line(exc)}",
                                       hint="fix the exporter output; `portarun inspect` shows the graph") from None

    def _infer_shapes_strictly(self, proto: onnx.ModelProto) -> None:
        """Strict shape inference; a graph that only contradicts its *declared* output shapes passes
        (real exporters write wrong ones, e.g. [1, seqlen] for a [20, 1, 8210] result; ONNX Runtime
        runs them) and the contradiction is kept in ``notes``."""
        try:
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
            return
        except onnx.shape_inference.InferenceError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            saved = [onnx.TypeProto() for _ in proto.graph.output]
            for keep, output in zip(saved, proto.graph.output):
                keep.CopyFrom(output.type)
                if output.type.HasField("tensor_type"):
                    output.type.tensor_type.ClearField("shape")
            try:
                onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
            except onnx.shape_inference.InferenceError:
                raise exc from None
            finally:
                for keep, output in zip(saved, proto.graph.output):
                    output.type.CopyFrom(keep)
            self.notes.append(f"declared output shapes differ from what the graph computes ({first}); "
                              "the outputs are returned as computed")

    # -- facts -------------------------------------------------------------------------
    @property
    def opsets(self) -> dict[str, int]:
        """Opset versions by domain, the default domain shown as "ai.onnx"."""
        return {(domain or "ai.onnx"): version for domain, version in opset_versions(self.proto.opset_import).items()}

    @property
    def opset(self) -> int:
        """The standard-domain opset version."""
        return opset_versions(self.proto.opset_import).get("", 0)

    @cached_property
    def sha256(self) -> str:
        """Content hash, computed piecewise so models over 2 GiB hash too."""
        h = hashlib.sha256()
        p = self.proto
        h.update(f"ir{p.ir_version}".encode())
        for opset in p.opset_import:
            h.update(opset.SerializeToString(deterministic=True))
        for fn in p.functions:
            h.update(fn.SerializeToString(deterministic=True))
        g = p.graph
        for group in (g.node, g.input, g.output, g.sparse_initializer):
            for item in group:
                h.update(item.SerializeToString(deterministic=True))
        for tensor in g.initializer:
            _hash_tensor(h, tensor)
        return h.hexdigest()

    def stats(self) -> ModelStats:
        histogram: collections.Counter[str] = collections.Counter()
        nodes = 0
        for graph in iter_graphs(self.proto.graph):
            for node in graph.node:
                nodes += 1
                histogram[f"{node.domain}::{node.op_type}" if onnx_domain(node.domain) else node.op_type] += 1
        params = 0
        nbytes = 0
        for tensor in _iter_tensors(self.proto.graph):
            count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
            params += count
            nbytes += _tensor_nbytes(tensor, count)
        return ModelStats(nodes, dict(histogram.most_common()), params, nbytes)

    @property
    def byte_size(self) -> int:
        """Serialized size. Protobuf cannot even size a message past 2 GiB (EncodeError): that reports
        PROTOBUF_LIMIT + 1, which every caller reads as "too big for one message"."""
        try:
            return self.proto.ByteSize()
        except EncodeError:
            return PROTOBUF_LIMIT + 1

    def serialized(self) -> bytes:
        """The model as bytes (ONNX Runtime, OpenVINO and friends accept this)."""
        if self.byte_size > PROTOBUF_LIMIT:
            raise ModelLoadError(f"model '{self.name}' is over 2 GiB and cannot be serialized in one piece",
                                 hint="pass the model's path instead; save it with external data")
        return self.proto.SerializeToString()

    # -- saving ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
        """Write the model atomically. Weights go to ``<name>.data`` when ``external_data``
        is True, or automatically when the model would not fit in one protobuf."""
        target = Path(path)
        if external_data is None:
            external_data = self.byte_size > PROTOBUF_LIMIT // 2
        save_model_file(self.proto, target, external_data=external_data)
        return target

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{s.dtype.name}{s.shape_text()}" for s in self.inputs)
        outs = ", ".join(f"{s.name}:{s.dtype.name}{s.shape_text()}" for s in self.outputs)
        return f"Model({self.name!r}, opset={self.opset}, inputs=({ins}), outputs=({outs}))"


def _hash_tensor(h, tensor: onnx.TensorProto) -> None:
    """Hash a tensor by content, whether its bytes were inline or loaded from external data."""
    h.update(f"{tensor.name}|{tensor.data_type}|{list(tensor.dims)}".encode())
    if tensor.raw_data:
        h.update(tensor.raw_data)
        return
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.ClearField("data_location")
    copy.ClearField("external_data")
    h.update(copy.SerializeToString(deterministic=True))


# element widths of the sub-byte types, as ONNX stores them (packed, two or four to a byte)
SUB_BYTE_BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.FLOAT4E2M1: 4,
                 onnx.TensorProto.INT2: 2, onnx.TensorProto.UINT2: 2}


def stored_nbytes(tensor: onnx.TensorProto) -> int:
    """Bytes ``tensor`` occupies as stored: sub-byte types packed (4-bit = half a byte), not as the
    one-byte-per-element arrays NumPy/ml_dtypes unpack them to. What a pass over the weight reads."""
    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return _tensor_nbytes(tensor, count)


def _tensor_nbytes(tensor: onnx.TensorProto, count: int) -> int:
    bits = SUB_BYTE_BITS.get(tensor.data_type)
    if bits:
        return (count * bits + 7) // 8
    try:
        return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 0


def save_model_file(proto: onnx.ModelProto, target: Path, *, external_data: bool) -> None:
    """Save ``proto`` at ``target`` (plus ``target.name + '.data'`` when external) atomically.

    The files are written into a temporary folder beside ``target`` and then moved
    into place (data file first), so a failed save leaves the previous files intact.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staged = staging / target.name
        if external_data:
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)  # save_model converts tensors to external in place
            onnx.save_model(copy, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f"{target.name}.data", size_threshold=1024)
        else:
            onnx.save_model(proto, str(staged))
        for item in sorted(staging.iterdir(), key=lambda p: p.name == target.name):
            os.replace(item, target.parent / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# Ops whose weight operand a quantizer looks for among the initializers (input index of the weight).
_WEIGHT_OPERANDS = {"MatMul": 1, "Gemm": 1, "Conv": 1, "Gather": 0}


def constant_weights_as_initializers(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of ``proto`` whose Constant nodes that hold a weight (the weight operand of MatMul, Gemm,
    Conv or Gather in the main graph) are initializers instead, as every other exporter writes them;
    None when there is none (paddle2onnx keeps every weight in a Constant node)."""
    graph = proto.graph
    weights = {node.input[i] for node in graph.node
               if node.op_type in _WEIGHT_OPERANDS and node.domain in STANDARD_DOMAINS
               and len(node.input) > (i := _WEIGHT_OPERANDS[node.op_type])}
    movable = [index for index, node in enumerate(graph.node)
               if node.op_type == "Constant" and len(node.output) == 1 and node.output[0] in weights
               and len(node.attribute) == 1 and node.attribute[0].name == "value"]
    if not movable:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for index in reversed(movable):
        node = copy.graph.node[index]
        tensor = onnx.TensorProto()
        tensor.CopyFrom(node.attribute[0].t)
        tensor.name = node.output[0]
        copy.graph.initializer.append(tensor)
        del copy.graph.node[index]
    return copy


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv",
              "MatMulInteger", "ConvInteger", "MatMulNBits", "DynamicQuantizeMatMul", "QAttention"}
_INT4_TYPES = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}


def quantization_of(model: "Model") -> str | None:
    """The quantized precision a model already carries ("int8", "int8-weight", "int4-weight"), or None.

    ``int8`` when activations are quantized (QuantizeLinear on a computed tensor),
    ``int4-weight`` when weights are 4-bit, ``int8-weight`` for other weight-only forms.
    """
    graph = model.proto.graph
    ops = [node for g in iter_graphs(graph) for node in g.node]
    if not any(node.op_type in _QUANT_OPS for node in ops):
        return None
    constants = {t.name for t in graph.initializer}
    constants |= {out for node in ops if node.op_type == "Constant" for out in node.output}
    int4 = {t.name for t in graph.initializer if t.data_type in _INT4_TYPES}
    if any(node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul")
           and node.input and node.input[0] not in constants for node in ops):
        return "int8"
    if any(node.op_type == "MatMulNBits" for node in ops) or any(
            node.op_type == "DequantizeLinear" and node.input and node.input[0] in int4 for node in ops):
        return "int4-weight"
    return "int8-weight"
