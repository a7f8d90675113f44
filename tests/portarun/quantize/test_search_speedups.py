"""The search's shortcuts change nothing: the version converter sees the model without its weights'
bytes, random samples come from one feed plan, (de)quantization runs in place; and the CLI shows each
stage of the search."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import version_converter

import portarun
from portarun.cli import main
from portarun.feeds import random_feeds
from portarun.progress import StageProgress
from portarun.quantize import RandomCalibration
from portarun.quantize.numerics import dequantize, quantize_blocked_int4, quantize_per_channel_int8
from portarun.quantize.rewrite import upgrade_opset


@pytest.mark.parametrize("name", ["transformer", "decoder-tiny", "cnn"])
def test_upgrading_without_the_weights_bytes_converts_exactly_as_the_converter_does(name):
    proto = portarun.models.build(name).proto
    before = proto.SerializeToString()
    converted = upgrade_opset(proto, 21)
    plain = version_converter.convert_version(proto, 21)
    plain.ir_version = converted.ir_version
    assert converted.SerializeToString() == plain.SerializeToString()
    assert proto.SerializeToString() == before  # the caller's model keeps its bytes
    assert any(len(t.raw_data) >= 4096 for t in converted.graph.initializer)


def test_random_samples_are_the_seeds_random_feeds():
    model = portarun.models.build("decoder-tiny")
    dims = {"batch": 1, "seq": 6, "past_seq": 0, "total_seq": 6}
    got = RandomCalibration(3, seed=4, dims=dims).samples(model, offset=5)
    for i, sample in enumerate(got):
        want = random_feeds(model, seed=4 + 5 + i, dims=dims)
        assert sample.keys() == want.keys() and all(np.array_equal(sample[k], want[k]) for k in want)


@pytest.mark.parametrize("shape, axis, block", [((64, 48), 0, 16), ((48, 40), 1, 16), ((5, 6, 7), 1, 4)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_blocked_dequantize_is_the_spec_formula(shape, axis, block, symmetric):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    q = quantize_blocked_int4(w, axis, block, symmetric=symmetric)
    # DequantizeLinear with block_size: each element uses the scale (and zero point) of its block
    index = np.arange(shape[axis]) // block
    scale = np.take(q.scale, index, axis=axis)
    zero = np.take(q.zero_point, index, axis=axis).astype(np.float32) if q.zero_point is not None else 0.0
    want = (q.values.astype(np.float32) - zero) * scale
    assert np.array_equal(dequantize(q), want) and q.values.flags.c_contiguous
    assert np.abs(dequantize(q) - w).max() <= np.abs(scale).max()  # within one step of the original
    q8 = quantize_per_channel_int8(w, 0)
    assert np.array_equal(dequantize(q8), q8.values.astype(np.float32) * q8.scale.reshape((-1,) + (1,) * (w.ndim - 1)))


def test_stage_progress_writes_one_line_per_stage_off_a_terminal():
    stream = io.StringIO()
    with StageProgress({"rank": "rank layers"}, prefix="q: ", stream=stream, enabled=True) as bars:
        bars("reference", 0, 1)
        bars("reference", 1, 1)
        for done in range(1, 4):
            bars("rank", done, 3)
        bars("search", 2, 10)
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["reference", "rank layers", "search"]
    assert lines[1].startswith("q: rank layers: 3 in ") and lines[2].startswith("q: search: 2/10 in ")
    quiet = io.StringIO()
    with StageProgress(stream=quiet, enabled=False) as bars:
        bars("rank", 1, 1)
    assert quiet.getvalue() == ""


def test_cli_quantize_shows_the_search_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTARUN_PROGRESS", "1")
    result = CliRunner().invoke(main, ["quantize", "builtin:transformer", "-p", "int8", "--accuracy-floor",
                                       "cosine=0.99995", "--dim", "seq=8", "-o", str(tmp_path / "t.onnx")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stderr
    for stage in ("calibrate activations", "float reference", "measure the starting plan", "rank layers",
                  "fallback steps", "judge and check the artifact"):
        assert f"quantize int8: {stage}: " in text, text
    assert onnx.load(str(tmp_path / "t.onnx")).graph.node


def test_a_terminal_without_rows_gets_plain_stage_lines():
    """A pty given columns but no rows (``stty cols 120`` under ``script``): tqdm would draw nothing."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    try:
        stream = os.fdopen(follower, "w", closefd=False)
        for rows, cols, terminal in ((0, 120, False), (40, 120, True)):
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            assert StageProgress(stream=stream, enabled=True).terminal is terminal
    finally:
        os.close(leader)
        os.close(follower)
