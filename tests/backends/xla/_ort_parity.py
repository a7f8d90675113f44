"""Run one ONNX model on onnxruntime directly and on xla:cpu through portarun; compare like ORT's users would.

Labels (ints or strings) must be equal; scores within ``atol``; ZipMap outputs (a list of
``{label: probability}`` dicts) must have ORT's keys in ORT's order.
"""

from __future__ import annotations

import numpy as np
import onnx

import portarun


def ort_run(model: onnx.ModelProto, feeds: dict, threads: int | None = None) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def assert_matches_ort(model: onnx.ModelProto, feeds: dict, atol: float = 1e-5, name: str = "model",
                       rtol: float = 0.0, check: bool = True, ort_threads: int | None = None) -> float:
    """Returns the largest score difference seen. Quantized files run at the precision they carry."""
    from portarun.model import quantization_of

    want = ort_run(model, feeds, ort_threads)
    wrapped = portarun.Model.from_proto(model, name=name, check=check)
    got = portarun.compile(wrapped, "xla:cpu", quantization_of(wrapped) or "fp32").run(feeds)
    worst = 0.0
    for key, expected in want.items():
        actual = got[key]
        if isinstance(expected, list):  # ZipMap
            assert isinstance(actual, list) and len(actual) == len(expected), key
            for e_row, a_row in zip(expected, actual):
                assert list(a_row) == list(e_row), f"{key}: keys {list(a_row)} != {list(e_row)}"
                for label in e_row:
                    worst = max(worst, abs(a_row[label] - e_row[label]))
            continue
        actual = np.asarray(actual)
        assert actual.shape == expected.shape, f"{key}: shape {actual.shape} != {expected.shape}"
        if expected.dtype == object or np.issubdtype(expected.dtype, np.integer):
            assert actual.dtype == expected.dtype, f"{key}: dtype {actual.dtype} != {expected.dtype}"
            np.testing.assert_array_equal(actual, expected, err_msg=key)
            continue
        if expected.size:
            worst = max(worst, float(np.max(np.abs(actual.astype(np.float64) - expected))))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=key)
    return worst
