"""The Open Inference Protocol (KServe v2 / Triton HTTP): tensors in and out of JSON and binary bodies.

Pure functions, no server: ``decode_infer_request`` turns a request body into numpy feeds,
``encode_infer_response`` turns outputs into a body (JSON, or JSON header + raw tensors when the
client asks for the binary tensor extension, as ``tritonclient.http`` does by default), and
``model_metadata`` describes a signature. A malformed request raises ``InputError`` whose
message becomes the protocol's ``{"error": "..."}`` body with HTTP 400.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and Triton's
binary tensor data extension (``Inference-Header-Content-Length``, ``binary_data_size``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..types import TensorSpec, np_dtype

HEADER_LENGTH = "Inference-Header-Content-Length"

# protocol datatype -> numpy dtype name (BYTES is the protocol's string tensor; portarun models take none)
_DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BF16": "bfloat16",
}
_NUMPY_TO_DATATYPE = {v: k for k, v in _DATATYPES.items()}


def datatype_of(dtype: Any) -> str:
    """The protocol datatype for a numpy dtype (``float32`` -> ``FP32``)."""
    name = np_dtype(dtype).name
    if name not in _NUMPY_TO_DATATYPE:
        raise InputError(f"dtype {name} has no Open Inference Protocol datatype",
                         hint=f"supported: {', '.join(sorted(_NUMPY_TO_DATATYPE))}")
    return _NUMPY_TO_DATATYPE[name]


def dtype_of(datatype: str) -> np.dtype:
    """The numpy dtype for a protocol datatype (``FP32`` -> ``float32``)."""
    if not isinstance(datatype, str) or datatype.upper() not in _DATATYPES:
        raise InputError(f"unknown datatype {datatype!r}", hint=f"one of: {', '.join(_DATATYPES)}")
    return np_dtype(_DATATYPES[datatype.upper()])


def dims_of(spec: TensorSpec) -> list[int]:
    """A signature's shape in protocol form: symbolic or unknown dims are -1."""
    if spec.shape is None:
        return [-1]
    return [d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape]


@dataclass
class InferRequest:
    """A decoded ``/infer`` body: the feeds, which outputs to return and in which form."""

    feeds: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] | None = None  # None: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False  # request parameter binary_data_output


def model_metadata(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *,
                   platform: str, versions: Sequence[str] = ("1",)) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the model's name, versions, platform and tensor signature."""
    def tensor(spec: TensorSpec) -> dict[str, Any]:
        return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": dims_of(spec)}

    return {"name": name, "versions": list(versions), "platform": platform,
            "inputs": [tensor(s) for s in inputs], "outputs": [tensor(s) for s in outputs]}


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _json_header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InputError(f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes")
        head, rest = body[:header_length], body[header_length:]
    else:
        head, rest = body, b""
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the request is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InputError("the request must be a JSON object with an 'inputs' list")
    return request, rest


def _shape_of(tensor: Mapping[str, Any], name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InputError(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def _decode_tensor(tensor: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    """One entry of ``inputs``; returns its name, array and the offset after its binary data."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InputError("each input must be an object with 'name', 'shape', 'datatype' and 'data'")
    name = tensor["name"]
    shape = _shape_of(tensor, name)
    dtype = dtype_of(tensor.get("datatype"))
    count = int(np.prod(shape, dtype=np.int64))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InputError(f"input '{name}': binary_data_size {size!r} runs past the body "
                             f"({len(binary) - offset} bytes left)")
        if size != count * dtype.itemsize:
            raise InputError(f"input '{name}': {size} bytes of binary data for shape {list(shape)} "
                             f"{tensor['datatype']} (needs {count * dtype.itemsize})")
        array = np.frombuffer(binary, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
        return name, array.astype(dtype, copy=True).reshape(shape), offset + size
    if "data" not in tensor:
        raise InputError(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
    try:
        array = np.asarray(tensor["data"], dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input '{name}': data is not {tensor['datatype']}: {exc}") from None
    if array.size != count:
        raise InputError(f"input '{name}': shape {list(shape)} needs {count} elements, data has {array.size}")
    return name, array.reshape(shape), offset


def decode_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse an ``/infer`` body (JSON, or JSON header + binary tensors when ``header_length`` is set)."""
    request, binary = _json_header(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("the request needs a non-empty 'inputs' list")
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in inputs:
        name, array, offset = _decode_tensor(tensor, binary, offset)
        if name in feeds:
            raise InputError(f"input '{name}' is given twice")
        feeds[name] = array
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    parameters = request.get("parameters") or {}
    decoded = InferRequest(feeds=feeds, id=request.get("id"),
                           binary_default=bool(parameters.get("binary_data_output", False)))
    requested = request.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                      for o in requested):
            raise InputError("'outputs' must be a list of objects with a 'name'")
        decoded.outputs = [o["name"] for o in requested]
        decoded.binary_outputs = {o["name"] for o in requested
                                  if (o.get("parameters") or {}).get("binary_data", decoded.binary_default)}
    return decoded


def check_requested_outputs(request: InferRequest, outputs: Sequence[TensorSpec]) -> None:
    """Unknown output names are a bad request, named like an unknown input is."""
    if request.outputs is None:
        return
    known = [s.name for s in outputs]
    unknown = [n for n in request.outputs if n not in known]
    if unknown:
        raise InputError(f"unknown output(s) {', '.join(repr(n) for n in unknown)}",
                         hint=f"outputs are: {', '.join(known)}")


def encode_infer_response(model_name: str, request: InferRequest, results: Mapping[str, np.ndarray], *,
                          model_version: str = "1", parameters: Mapping[str, Any] | None = None,
                          ) -> tuple[bytes, dict[str, str]]:
    """The ``/infer`` response body and its headers (binary tensors appended after the JSON header)."""
    names = request.outputs if request.outputs is not None else list(results)
    tensors, blobs = [], []
    for name in names:
        array = np.asarray(results[name])
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        binary = name in request.binary_outputs if request.outputs is not None else request.binary_default
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            # tolist() gives Python floats: float32 -> double -> repr round-trips exactly through JSON
            entry["data"] = array.astype(np.float32).ravel().tolist() if array.dtype.name == "bfloat16" \
                else array.ravel().tolist()
        tensors.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    if parameters:
        response["parameters"] = dict(parameters)
    header = json.dumps(response).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream",
                                      HEADER_LENGTH: str(len(header))}


@dataclass(frozen=True)
class Route:
    """Which protocol endpoint a path names: ``kind`` is server, live, ready, metadata, model_ready or infer."""

    kind: str
    method: str  # the HTTP method the endpoint takes
    model: str | None = None
    version: str | None = None


_SERVER_ROUTES = {("v2",): "server", ("v2", "health", "live"): "live", ("v2", "health", "ready"): "ready"}


def parse_path(path: str) -> Route | None:
    """The endpoint for a URL path, or None when the protocol has no such path (HTTP 404)."""
    parts = tuple(p for p in path.split("/") if p)
    if parts in _SERVER_ROUTES:
        return Route(_SERVER_ROUTES[parts], "GET")
    if len(parts) < 3 or parts[:2] != ("v2", "models"):
        return None
    model, rest = parts[2], parts[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    endpoints = {(): ("metadata", "GET"), ("ready",): ("model_ready", "GET"), ("infer",): ("infer", "POST")}
    if rest not in endpoints:
        return None
    kind, method = endpoints[rest]
    return Route(kind, method, model, version)
