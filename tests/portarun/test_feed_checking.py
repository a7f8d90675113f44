import numpy as np
import pytest

import portarun
from portarun import InputError


@pytest.fixture(scope="module")
def transformer_exe(builtin_models):
    with portarun.compile(builtin_models["transformer"], "onnxruntime:cpu") as exe:
        yield exe


def x(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def test_missing_and_unknown_names(transformer_exe):
    with pytest.raises(InputError, match="missing 'x'"):
        transformer_exe.run({})
    with pytest.raises(InputError, match=r"unknown 'xx' \(did you mean 'x'\?\)"):
        transformer_exe.run({"x": x(1, 4, 256), "xx": x(1)})


def test_wrong_dtype_rank_and_fixed_dim(transformer_exe):
    with pytest.raises(InputError, match="input 'x': expected dtype float32, got float64"):
        transformer_exe.run({"x": np.zeros((1, 4, 256))})
    with pytest.raises(InputError, match="expected rank 3"):
        transformer_exe.run({"x": x(4, 256)})
    with pytest.raises(InputError, match="dim 2 must be 256, got 255"):
        transformer_exe.run({"x": x(1, 4, 255)})


def test_not_a_mapping_and_not_an_array(transformer_exe):
    with pytest.raises(InputError, match="mapping"):
        transformer_exe.run([x(1, 4, 256)])
    with pytest.raises(InputError, match="expected a numpy array, got object"):
        transformer_exe.run({"x": object()})


def test_dynamic_dims_accept_any_size(transformer_exe):
    for batch, seq in [(1, 1), (3, 7)]:
        out = transformer_exe.run({"x": x(batch, seq, 256)})
        assert out["y"].shape == (batch, seq, 256)


def test_check_false_skips_validation(transformer_exe):
    # the backend's own error still surfaces, as a RunError naming backend and target
    with pytest.raises(portarun.RunError, match="onnxruntime failed to run 'transformer' on onnxruntime:cpu"):
        transformer_exe.run({"x": x(1, 4, 255)}, check=False)
