"""The CLI with -t openvino:cpu: compile to an artifact, run it, the NNCF quantizer through --option."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from portarun.cli import main


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_compile_then_run_the_artifact(tmp_path):
    artifact = tmp_path / "mlp.openvino-cpu"
    text = invoke("compile", "builtin:mlp", "-t", "openvino:cpu", "-o", artifact).output
    assert "openvino:cpu" in text and "fp32" in text
    out = tmp_path / "out.npz"
    invoke("run", artifact, "--random", "--seed", "3", "-o", out)
    direct = tmp_path / "direct.npz"
    invoke("run", "builtin:mlp", "-t", "reference:cpu", "--random", "--seed", "3", "-o", direct)
    with np.load(out) as got, np.load(direct) as expected:
        np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-4, atol=1e-5)


def test_nncf_through_options_and_an_absent_device(tmp_path):
    artifact = tmp_path / "mlp.w8"
    invoke("compile", "builtin:mlp", "-t", "openvino:cpu", "-p", "int8-weight",
           "--option", "quantizer=nncf", "-o", artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["provenance"]["details"]["quantization"]["quantizer"] == "nncf"
    assert manifest["options"] == {"quantizer": "nncf"}
    text = invoke("run", "builtin:mlp", "-t", "openvino:gpu", "--random", code=2).output
    assert "openvino:cpu" in text
