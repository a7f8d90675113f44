"""`portarun export`: a factory file to a validated .onnx, and clear errors for bad input."""

import pytest
from click.testing import CliRunner

import portarun
from portarun.cli import main

pytest.importorskip("torch", reason="torch is not installed (pip install 'portarun[torch]')")

FACTORY = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu().mean(dim=(2, 3))

def build_model():
    return Net()
"""


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY)
    return path


def test_export_factory_with_dynamic_batch(factory, tmp_path):
    out = tmp_path / "net.onnx"
    text = invoke("export", f"{factory}:build_model", "--example-input", "x=2x3x8x8:float32",
                  "--dynamic", "x:0=batch", "--exporter", "torchscript", "-o", out).output
    assert "torchscript exporter at opset 18" in text and "max abs error vs PyTorch" in text
    model = portarun.load(out)
    assert model.inputs[0].shape == ("batch", 3, 8, 8)


@pytest.mark.parametrize("args, message", [
    (["{dir}/missing.py:build_model", "--example-input", "x=1x3:float32"], "not found"),
    (["{factory}:nope", "--example-input", "x=1x3:float32"], "no callable 'nope'"),
    (["{factory}:build_model", "--example-input", "x=1x3xz:float32"], "malformed example input"),
    (["{factory}:build_model", "--example-input", "x=1x3:float32", "--dynamic", "x0=batch"],
     "malformed dynamic axis"),
    (["{factory}:build_model"], "needs --example-input"),
    (["--hf-path", "{dir}"], "needs --task"),
    ([], "exactly one source"),
])
def test_export_bad_input(factory, tmp_path, args, message):
    args = [a.format(dir=tmp_path, factory=factory) for a in args]
    result = invoke("export", *args, "-o", tmp_path / "x.onnx", code=2)
    assert message in result.output
    assert not (tmp_path / "x.onnx").exists()
