"""The user's model with the user's data through the CLI: the exported MiniLM with random feeds, an
.npz, a folder, text and a tokenizer on compare, conformance, run, bench and quantize; --dim checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import portarun
from portarun.cli import main

CPU_CHECKED = ("openvino:cpu", "xla:cpu")


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == code, result.output
        return result

    return invoke


@pytest.fixture(scope="module")
def minilm_file(minilm_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("minilm") / "minilm.onnx"
    minilm_model.save(path)
    return path


@pytest.fixture(scope="module")
def minilm_npz(minilm_file, tmp_path_factory):
    from portarun.models import minilm

    feeds = minilm.encode(list(minilm.SENTENCES[:3]))
    path = tmp_path_factory.mktemp("feeds") / "feeds.npz"
    np.savez(path, **{k: v[:, None] for k, v in feeds.items()})  # a leading sample axis: 3 samples of batch 1
    return path


def _available(target):
    return target.split(":")[0] in {b.name for b in portarun.list_backends() if b.available}


@pytest.mark.parametrize("target", CPU_CHECKED)
def test_compare_minilm_with_random_feeds_and_with_an_npz(cli, minilm_file, minilm_npz, target, tmp_path):
    if not _available(target):
        pytest.skip(f"{target} is not available")
    random = cli("compare", minilm_file, "-t", "onnxruntime:cpu", "-t", target)
    assert "PASS" in random.output and "token_type_ids int64[1, 16]: index in [0, 2)" in random.output
    report = tmp_path / "cmp.json"
    cli("compare", minilm_file, "-t", "onnxruntime:cpu", "-t", target, "--inputs", minilm_npz, "--json", report)
    data = json.loads(report.read_text())
    assert data["samples"] == 3 and data["comparison"]["passed"]


def test_compare_takes_text_and_a_tokenizer(cli, minilm_file):
    from portarun.models import minilm

    result = cli("compare", minilm_file, "-t", "onnxruntime:cpu", "-t", "openvino:cpu", "--text", "A first sentence.",
                 "--text", "And a second, longer sentence for the encoder.", "--tokenizer", minilm.tokenizer_path())
    assert "PASS" in result.output and "2 text(s) tokenized" in result.output


def test_conformance_with_the_users_inputs_on_every_cpu_target(cli, minilm_file, minilm_npz, tmp_path):
    args = ["conformance", minilm_file, "--suite", "models", "-p", "fp32", "--inputs", minilm_npz, "--runs", 1,
            "--warmup", 0, "--no-localize", "--json", tmp_path / "c.json", "--out-dir", tmp_path]
    for target in ("onnxruntime:cpu",) + CPU_CHECKED:
        if _available(target):
            args += ["-t", target]
    cli(*args)
    document = json.loads((tmp_path / "c.json").read_text())
    cells = [r for r in document["results"] if r["precision"] == "fp32"]
    assert len(cells) >= 2 and all(r["passed"] for r in cells), [r["message"] for r in cells]


def test_dims_are_checked_and_refused_with_data(cli, minilm_file, minilm_npz):
    unknown = cli("compare", minilm_file, "-t", "onnxruntime:cpu", "--dim", "seq=8", code=2)
    assert "no symbolic dim 'seq'" in unknown.output and "batch, sequence" in unknown.output
    negative = cli("run", minilm_file, "-t", "onnxruntime:cpu", "--random", "--dim", "sequence=-4", code=2)
    assert "must be positive" in negative.output
    both = cli("run", minilm_file, "-t", "onnxruntime:cpu", "--inputs", minilm_npz, "--dim", "batch=2", code=2)
    assert "--dim" in both.output and "your arrays' shapes" in both.output


def test_run_bench_and_quantize_read_folders_of_samples(cli, tmp_path):
    mlp = portarun.models.build("mlp")
    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        np.savez(folder / f"{i:02d}.npz", x=rng.standard_normal((1, 64)).astype(np.float32))
    np.savez(tmp_path / "held.npz", x=rng.standard_normal((8, 1, 64)).astype(np.float32))
    ran = cli("run", "builtin:mlp", "-t", "onnxruntime:cpu", "--inputs", folder)
    assert "sample 1 of 12" in ran.output and "12 sample(s)" in ran.output
    bench = tmp_path / "bench.json"
    cli("bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--inputs", folder, "--runs", 2, "--warmup", 0,
        "--json", bench)
    assert [row["batch"] for row in json.loads(bench.read_text())["rows"]] == [1]
    out = cli("quantize", "builtin:mlp", "-p", "int8", "--calibration", folder, "--eval", tmp_path / "held.npz",
              "-o", tmp_path / "q.onnx", "--allow-below-floor")
    assert "8 validation samples given" in out.output or "validation" in out.output
    assert (tmp_path / "q.onnx").is_file() and mlp.inputs[0].name == "x"


def test_inspect_reports_dims_written_as_numbers_and_the_precision_as_written(cli, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "m.onnx")
    out = cli("inspect", tmp_path / "m.onnx").output
    assert "runs as fp32 without -p" in out and "x:0" in out and "[?, 3]" in out
    data = json.loads(cli("inspect", tmp_path / "m.onnx", "--json", "-").output)
    assert data["precision_as_written"] == "fp32" and "x:0" in data["notes"][0]
