"""OpenVINO's NNCF path reports like portarun.quantize: the same floor, 32 prompts and next-token agreement for
a decoder, and int4 layers whose K the group size does not divide get a smaller group (the portable rule)."""

import pytest

import portarun

pytest.importorskip("nncf", reason="nncf is not installed (pip install nncf)")


@pytest.fixture(scope="module")
def decoder():
    return portarun.models.build("decoder-tiny")  # hidden 64: NNCF's default group 128 divides none of its K


def test_nncf_int4_decoder_is_judged_like_the_neutral_quantizer(decoder):
    exe = portarun.compile(decoder, "openvino:cpu", "int4-weight", quantizer="nncf", cache=False)
    report = exe.provenance.details["quantization"]
    neutral_floor = portarun.quantize(decoder, "int4-weight").report.floor
    assert report["floor"] == neutral_floor and report["floor_met"] is True
    accuracy = report["accuracy"]
    assert accuracy["samples"] == 32 and accuracy["next_token"] is not None
    low, high = accuracy["next_token_interval"]
    assert low <= accuracy["next_token"] <= high
    assert report["group_size_fallback"] == "adjust"
    blocks = {r["block_size"] for r in report["nodes"] if r["level"] == "int4"}
    assert 64 in blocks and all(b in (16, 32, 64, 128) for b in blocks)


def test_nncf_group_size_fallback_is_an_option(decoder):
    with pytest.raises(portarun.CompileError, match="group size"):
        portarun.compile(decoder, "openvino:cpu", "int4-weight", quantizer="nncf", cache=False,
                         group_size_fallback="error", accuracy_samples=0)
    with pytest.raises(portarun.UsageError, match="group_size_fallback"):
        portarun.compile(decoder, "openvino:cpu", "int4-weight", quantizer="nncf", cache=False,
                         group_size_fallback="shrink", accuracy_samples=0)
