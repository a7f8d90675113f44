"""Executable.run(..., tails=...): each backend returns exactly the full output's tail; bad requests are UsageErrors."""

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.errors import UsageError
from portarun.generate import _StaticCache, DecoderSignature, forced_logits

CAPACITY = 16


@pytest.fixture(scope="module")
def tiny():
    return models.build("decoder-tiny")


def _static_feeds(executable):
    sig = DecoderSignature.of(executable)
    loop = _StaticCache(sig, 1, CAPACITY)
    ids = np.array([[3, 141, 59, 26]])
    return sig, loop.feeds(ids, np.arange(4)[None, :]), loop.tails(4)


@pytest.mark.parametrize("target", ["onnxruntime:cpu", "xla:cpu", "openvino:cpu"])
def test_tails_are_the_full_outputs_ends(tiny, target):
    pytest.importorskip({"onnxruntime:cpu": "onnxruntime", "xla:cpu": "jax", "openvino:cpu": "openvino"}[target])
    with portarun.compile(tiny, target) as exe:
        sig, feeds, tails = _static_feeds(exe)
        full = exe.run(feeds)
        cut = exe.run(feeds, tails=tails)
        assert set(cut) == set(full)
        for name, (axis, start) in tails.items():
            expected = full[name][(slice(None),) * axis + (slice(start, None),)]
            assert cut[name].shape == expected.shape
            np.testing.assert_allclose(cut[name], expected, rtol=1e-5, atol=1e-6)
        assert cut[sig.present[0]].shape[2] == 4  # only the 4 new entries after the capacity slots
        assert cut[sig.logits].shape[1] == 1
        # a tail past the end is empty, and the other outputs are whole
        empty = exe.run(feeds, tails={sig.present[0]: (-2, CAPACITY + 4)})
        assert empty[sig.present[0]].shape[2] == 0
        assert empty[sig.logits].shape == full[sig.logits].shape


def test_xla_cuts_tails_inside_its_program_and_says_so(tiny):
    pytest.importorskip("jax")
    with portarun.compile(tiny, "xla:cpu") as exe:
        sig, feeds, tails = _static_feeds(exe)
        exe.run(feeds)
        exe.run(feeds, tails=tails)
        exe.run(feeds, tails=tails)  # the tailed program is cached like any other signature
        signatures = exe.provenance.details["signatures"]
        assert len(signatures) == 2 and exe.provenance.details["compile_count"] == 2
        assert "tails" not in signatures[0] and f"{sig.present[0]}[axis 2 from {CAPACITY}]" in signatures[1]


def test_static_generate_on_xla_matches_onnxruntime(tiny):
    pytest.importorskip("jax")
    prompt = np.array([[3, 141, 59, 26, 5, 35, 89, 79]])
    with portarun.compile(tiny, "onnxruntime:cpu") as ort, portarun.compile(tiny, "xla:cpu") as xla:
        expected = portarun.generate(ort, prompt, 12, cache="static").tokens
        np.testing.assert_array_equal(portarun.generate(xla, prompt, 12, cache="static").tokens, expected)
        np.testing.assert_allclose(forced_logits(xla, expected, cache="static"),
                                   forced_logits(ort, expected, cache="static"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tails, message", [
    ({"nope": (0, 0)}, "'nope', which is not an output"),
    ({"logits": (3, 0)}, "asks axis 3 from 0, but the output has rank 3"),
    ({"logits": (1, -1)}, "asks axis 1 from -1"),
    ({"logits": (1,)}, "must be (axis, start) integers"),
    ({"logits": (True, 0)}, "must be (axis, start) integers"),
    ([("logits", (1, 0))], "tails must map output names"),
])
def test_bad_tails_are_usage_errors_naming_the_target(tiny, tails, message):
    with portarun.compile(tiny, "onnxruntime:cpu") as exe:
        _, feeds, _ = _static_feeds(exe)
        with pytest.raises(UsageError) as info:
            exe.run(feeds, tails=tails)
        assert message in str(info.value) and str(info.value).startswith("onnxruntime:cpu: ")
