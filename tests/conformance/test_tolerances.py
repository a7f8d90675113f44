"""Tolerances per precision from the data file; overrides match on selectors and must say why."""

from __future__ import annotations

import json

import numpy as np
import pytest

import portarun
from portarun import Precision, UsageError
from portarun_conformance.tolerances import explain_tolerance, load_table, tolerance_for

TABLE = {
    "precisions": {"fp32": {"rtol": 1e-4, "atol": 1e-5}, "fp16": {"rtol": 1e-2, "atol": 1e-2, "min_cosine": 0.999},
                   "int8": {"rtol": 1.0, "atol": 1.0, "min_within": 0.0, "min_cosine": 0.98}},
    "overrides": [
        {"precision": "fp16", "backend": "openvino", "atol": 5e-2, "why": "backend-wide"},
        {"precision": "fp16", "backend": "openvino", "op": "Softmax", "atol": 1e-1, "why": "op-specific"},
        {"case": "builtin:cnn", "rtol": 1e-3, "why": "any precision of one case"},
    ],
}


def test_packaged_table_has_every_precision_and_justified_overrides():
    table = load_table()
    assert set(table["precisions"]) == {p.value for p in Precision}
    assert all(o["why"].strip() for o in table["overrides"])
    fp32 = tolerance_for("fp32")
    assert (fp32.rtol, fp32.atol, fp32.min_within, fp32.min_cosine) == (1e-4, 1e-5, 1.0, None)
    assert tolerance_for("int4-weight").min_cosine == 0.95


def test_precisions_get_looser_as_bits_drop():
    rtols = [tolerance_for(p).rtol for p in ("fp32", "fp16", "bf16")]
    assert rtols == sorted(rtols) and rtols[0] < rtols[-1]
    floors = [tolerance_for(p).min_cosine for p in ("int8-weight", "int8", "int4-weight")]
    assert floors == sorted(floors, reverse=True)


def test_most_specific_override_wins_and_reasons_are_reported():
    base, why = explain_tolerance("fp16", backend="onnxruntime", table=TABLE)
    assert (base.atol, why) == (1e-2, [])
    backend_wide, why = explain_tolerance("fp16", backend="openvino", table=TABLE)
    assert (backend_wide.atol, why) == (5e-2, ["backend-wide"])
    op_specific, why = explain_tolerance("fp16", backend="openvino", op="Softmax", table=TABLE)
    assert op_specific.atol == 1e-1 and why == ["backend-wide", "op-specific"]
    assert op_specific.min_cosine == 0.999  # untouched numbers keep the precision's value
    case_wide = tolerance_for("fp32", case="builtin:cnn", table=TABLE)
    assert (case_wide.rtol, case_wide.atol) == (1e-3, 1e-5)
    assert tolerance_for("fp32", case="builtin:mlp", table=TABLE).rtol == 1e-4


def test_override_without_reason_is_refused(tmp_path):
    bad = {"precisions": {"fp32": {"rtol": 1e-4, "atol": 1e-5}}, "overrides": [{"backend": "x", "rtol": 1}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="no 'why'"):
        load_table(str(path))


def test_tolerance_decides_pass_and_fail_per_precision():
    rng = np.random.default_rng(0)
    expected = {"y": rng.standard_normal((4, 64)).astype(np.float32)}
    noisy = {"y": expected["y"] + np.float32(3e-3)}  # a half-precision-sized error
    assert not portarun.compare(noisy, expected, tolerance_for("fp32"))
    assert portarun.compare(noisy, expected, tolerance_for("fp16"))
    scrambled = {"y": rng.standard_normal((4, 64)).astype(np.float32)}
    assert not portarun.compare(scrambled, expected, tolerance_for("int8"))  # cosine floor, not elements
    scaled = {"y": expected["y"] * np.float32(1.3)}  # every element off, direction kept: cosine 1
    assert portarun.compare(scaled, expected, tolerance_for("int8"))


def test_a_cpu_feature_override_applies_only_where_the_cpu_lacks_it():
    from portarun.plugin import cpu_features

    table = {"precisions": {"int8": {"rtol": 1.0, "atol": 1.0, "min_cosine": 0.98}},
             "overrides": [{"precision": "int8", "backend": "openvino", "cpu_without": "vnni", "min_cosine": 0.9,
                            "why": "no VNNI"}]}
    tolerance, why = explain_tolerance("int8", backend="openvino", table=table)
    if cpu_features().vnni:
        assert (tolerance.min_cosine, why) == (0.98, [])
    else:
        assert (tolerance.min_cosine, why) == (0.9, ["no VNNI"])
    assert explain_tolerance("int8", backend="onnxruntime", table=table)[1] == []
