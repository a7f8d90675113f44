"""--isolate and --timeout on compile, run, compare and bench; compare reports undefined feeds as a divergence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from portarun.cli import main
from portarun.worker import import_plugin

HANGY = str(Path(__file__).parents[2] / "conformance" / "_backends.py")


def _invoke(args):
    return CliRunner().invoke(main, args)


def test_run_and_compile_isolated(tmp_path):
    result = _invoke(["run", "builtin:mlp", "-t", "onnxruntime:cpu", "--random", "--isolate"])
    assert result.exit_code == 0, result.output
    result = _invoke(["compile", "builtin:mlp", "-t", "onnxruntime:cpu", "--timeout", "120", "-o",
                      str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    result = _invoke(["run", str(tmp_path / "a"), "--random", "--isolate"])
    assert result.exit_code == 0, result.output


def test_bench_isolated():
    result = _invoke(["bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--isolate", "--runs", "2", "--warmup", "0"])
    assert result.exit_code == 0, result.output


def test_a_run_past_its_timeout_is_one_line_and_exit_code_1(monkeypatch):
    import_plugin(HANGY)
    monkeypatch.setenv("PORTARUN_PLUGINS", HANGY)
    result = _invoke(["run", "builtin:mlp", "-t", "hangy:cpu", "--random", "--timeout", "8"])
    assert result.exit_code == 1, result.output
    # the feed plan (dims, what each random input holds) is printed before the run; the failure is one line
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "run of 'mlp' on hangy:cpu timed out after 8 s" in errors[0] and "--timeout SECONDS" in errors[0]
    assert result.output.rstrip().endswith(errors[0])


def test_a_bad_timeout_is_a_usage_error():
    assert _invoke(["run", "builtin:mlp", "-t", "onnxruntime:cpu", "--random", "--timeout", "0"]).exit_code == 2


def test_compare_on_undefined_feeds_reports_a_divergence(tmp_path):
    graph = helper.make_graph([helper.make_node("Gather", ["d", "i"], ["y"], name="lookup")], "g",
                              [helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.arange(4, dtype=np.float32), "d")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    np.savez(tmp_path / "bad.npz", i=np.array([1, 99]))
    np.savez(tmp_path / "good.npz", i=np.array([1, 3]))
    model = str(tmp_path / "g.onnx")
    good = _invoke(["compare", model, "-t", "reference:cpu", "-t", "onnxruntime:cpu", "--inputs",
                    str(tmp_path / "good.npz")])
    assert good.exit_code == 0, good.output
    bad = _invoke(["compare", model, "-t", "reference:cpu", "-t", "onnxruntime:cpu", "--inputs",
                   str(tmp_path / "bad.npz")])
    assert bad.exit_code == 1, bad.output
    assert "DIVERGENCE" in bad.output and "Gather node 'lookup'" in bad.output
    assert os.path.exists(model)
