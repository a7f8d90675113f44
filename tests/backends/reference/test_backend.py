import numpy as np
import pytest

import portarun


def test_reference_runs_builtins_and_reports(builtin_models, builtin_feeds):
    exe = portarun.compile(builtin_models["mlp"], "reference")
    out = exe.run(builtin_feeds("mlp"))["logits"]
    assert out.shape == (1, 10) and out.dtype == np.float32
    assert exe.provenance.providers == ("onnx.reference",) and exe.target.device == "cpu"


def test_reference_refuses_precisions_it_would_fake(builtin_models):
    backend = portarun.get_backend("reference")
    for precision in ("fp16", "bf16", "int8", "int4-weight"):
        assert not backend.supports(builtin_models["mlp"], None, precision)
    with pytest.raises(portarun.UnsupportedError, match="reference cannot compile 'mlp'"):
        portarun.compile(builtin_models["mlp"], "reference", "fp16")


def test_listed_precisions_are_ones_it_accepts():
    """`portarun backends` lists a backend's declared precisions: the reference must not list bf16/fp16,
    which it always refuses (it evaluates the model as written)."""
    import portarun
    from portarun import models

    backend = portarun.get_backend("reference")
    declared = {p.value for p in backend.precisions}
    assert declared == {"fp32", "int8", "int8-weight", "int4-weight"}
    mlp = models.build("mlp")
    for precision in ("fp16", "bf16"):
        support = backend.supports(mlp, "reference:cpu", precision)
        assert not support and "supported: fp32" in support.reason
    for precision in ("int8", "int8-weight", "int4-weight"):
        assert backend.supports(portarun.quantize(mlp, precision).model, "reference:cpu", precision)
