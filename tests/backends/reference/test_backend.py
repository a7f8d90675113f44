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
