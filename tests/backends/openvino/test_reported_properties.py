"""A property OpenVINO fails to read is recorded, not swallowed (a stand-in compiled model: plumbing only)."""

import pytest

from portarun.plugin import CompileError, Precision
from portarun_backends.openvino.config import check_precision, reported_properties


class _Compiled:
    """Stands in for ov.CompiledModel: reports a few properties and fails to read the precision."""

    def get_property(self, key):
        if key == "SUPPORTED_PROPERTIES":
            return ["INFERENCE_PRECISION_HINT", "NUM_STREAMS"]
        if key == "NUM_STREAMS":
            return 1
        raise RuntimeError(f"Exception from src/plugin.cpp:1:\nno {key} here")


def test_an_unreadable_precision_is_named_in_the_report_and_the_error():
    report = reported_properties(_Compiled())
    assert report["NUM_STREAMS"] == 1
    assert report["unreadable"]["INFERENCE_PRECISION_HINT"].startswith("Exception from src/plugin.cpp")
    assert "LOADED_FROM_CACHE" in report["unreadable"] and "DEVICE_PROPERTIES" in report["unreadable"]
    with pytest.raises(CompileError, match="reading it failed"):
        check_precision(Precision.FP32, report, "openvino:cpu")
