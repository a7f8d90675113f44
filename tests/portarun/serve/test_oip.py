"""The Open Inference Protocol codec on its own: bodies as tritonclient writes and reads them."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from portarun import InputError, TensorSpec
from portarun.serve import oip

httpclient = pytest.importorskip("tritonclient.http")


@pytest.mark.parametrize("dtype, datatype", [(np.float32, "FP32"), (np.float16, "FP16"), (np.int64, "INT64"),
                                             (np.uint8, "UINT8"), (np.bool_, "BOOL"),
                                             (ml_dtypes.bfloat16, "BF16")])
def test_tritonclient_binary_request_decodes_to_the_same_array(dtype, datatype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    tensor = httpclient.InferInput("a", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([tensor])
    decoded = oip.decode_infer_request(body, header_length)
    assert decoded.feeds["a"].dtype == np.dtype(dtype)
    assert np.array_equal(decoded.feeds["a"], array)
    assert decoded.binary_default  # no outputs named: tritonclient asks for binary outputs


def test_binary_response_is_what_tritonclient_parses():
    request = oip.InferRequest(feeds={}, outputs=["y", "n"], binary_outputs={"y"}, id="7")
    y = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    n = np.array([[1, 2, 3]], np.int32)
    body, headers = oip.encode_infer_response("m", request, {"y": y, "n": n, "unrequested": y})
    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(headers[oip.HEADER_LENGTH]))
    assert np.array_equal(result.as_numpy("y"), y) and np.array_equal(result.as_numpy("n"), n)
    assert result.get_output("unrequested") is None
    assert result.get_response()["id"] == "7"


def test_json_response_round_trips_float32_exactly():
    y = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    body, headers = oip.encode_infer_response("m", oip.InferRequest(feeds={}), {"y": y})
    assert headers["content-type"] == "application/json"
    (out,) = json.loads(body)["outputs"]
    assert np.array_equal(np.asarray(out["data"], np.float32), y)


def _binary(inputs: list, tail: bytes) -> tuple[bytes, int]:
    header = json.dumps({"inputs": inputs}).encode()
    return header + tail, len(header)


def _fp32(shape, **extra):
    return {"name": "a", "shape": shape, "datatype": "FP32", **extra}


@pytest.mark.parametrize("body, header_length, words", [
    (json.dumps({"inputs": [_fp32([2], parameters={"binary_data_size": 8})]}).encode(), None, "runs past the body"),
    (*_binary([_fp32([3], parameters={"binary_data_size": 8})], b"\0" * 8), "needs 12"),
    (*_binary([_fp32([1], data=[1])], b"\0" * 4), "not claimed"),
    (json.dumps({"inputs": [{**_fp32([1], data=[1]), "datatype": "STRING"}]}).encode(), None, "unknown datatype"),
    (json.dumps({"inputs": [_fp32([-1], data=[1])]}).encode(), None, "non-negative"),
    (json.dumps({"inputs": [{**_fp32([1], data=["x"]), "datatype": "INT32"}]}).encode(), None, "not INT32"),
    (b"[1, 2]", None, "JSON object"),
    (json.dumps({"inputs": [_fp32([1], data=[1])]}).encode(), 500, "body has"),
])
def test_malformed_bodies_are_input_errors(body, header_length, words):
    with pytest.raises(InputError, match=words):
        oip.decode_infer_request(body, header_length)


def test_metadata_marks_dynamic_dims_minus_one():
    meta = oip.model_metadata("m", [TensorSpec("x", "float32", ("batch", 3, None))],
                              [TensorSpec("y", "int64", None)], platform="portarun_onnxruntime")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, -1]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "INT64", "shape": [-1]}]


@pytest.mark.parametrize("path, kind, model, version", [
    ("/v2", "server", None, None), ("/v2/health/live", "live", None, None),
    ("/v2/health/ready", "ready", None, None), ("/v2/models/m", "metadata", "m", None),
    ("/v2/models/m/versions/1/ready", "model_ready", "m", "1"), ("/v2/models/m/infer", "infer", "m", None),
])
def test_paths_name_their_endpoint(path, kind, model, version):
    route = oip.parse_path(path)
    assert (route.kind, route.model, route.version) == (kind, model, version)


@pytest.mark.parametrize("path", ["/", "/v1/models/m", "/v2/models", "/v2/models/m/explain", "/v2/health"])
def test_unknown_paths_have_no_endpoint(path):
    assert oip.parse_path(path) is None
