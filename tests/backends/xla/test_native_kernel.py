"""portarun's XLA:CPU QMatMul kernel (backends/xla/quant/qmatmul_kernel.cc), built here with the machine's
compiler: the ISA it was built for matches this CPU, the AVX2 and plain C++ builds (made in a subprocess with
PORTARUN_XLA_NATIVE_MARCH) compute what the reference does, it refuses operands that do not fit its layout
(an artifact is a file: shapes are checked, not trusted), runs from many threads, survives an artifact's
save and load, and a failing build is a reason, not an exception."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import portarun

from .test_quantized_matmul_forms import _dequantize_matmul

jax = pytest.importorskip("jax")

from portarun_backends.xla.quant import native  # noqa: E402


def _expected_isa() -> str:
    features = portarun.plugin.cpu_features()
    return "avx512" if features.avx512 else "avx2" if features.avx2 else "scalar"


def test_the_kernel_builds_for_this_cpu():
    if os.environ.get("PORTARUN_XLA_NATIVE_MARCH", "native") != "native":
        pytest.skip("PORTARUN_XLA_NATIVE_MARCH builds for another CPU on purpose")
    built = native.kernel()
    assert built.available, built.detail
    assert built.detail.startswith(_expected_isa() + " "), (built.detail, _expected_isa())


_SUBPROCESS_CHECK = textwrap.dedent("""
    import numpy as np, portarun
    from tests.backends.xla.test_quantized_matmul_forms import _dequantize_matmul
    from portarun_backends.xla.quant import native
    built = native.kernel()
    assert built.available and built.detail.startswith("{isa} "), built.detail
    for dtype, granularity, zero in (("int8", "channel", True), ("uint4", "block", False), ("int4", "block", True)):
        model = _dequantize_matmul(dtype, granularity, zero, k=80, n=150)
        x = (np.random.default_rng(1).standard_normal((2, 5, 80)) + 0.5).astype(np.float32)
        precision = "int4-weight" if "4" in dtype else "int8-weight"
        want = portarun.compile(model, "reference:cpu", precision).run({{"x": x}})["y"]
        got = portarun.compile(model, "xla:cpu", precision, quantized_matmul="native").run({{"x": x}})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    print("ok", built.detail)
""")


@pytest.mark.parametrize("march,isa", [("haswell", "avx2"), ("x86-64", "scalar")])
def test_the_avx2_and_plain_builds_match_the_reference(march, isa, tmp_path):
    """Each build's code path, whatever this CPU is (an AVX2 build needs an AVX2 CPU to run)."""
    if isa == "avx2" and not portarun.plugin.cpu_features().avx2:
        pytest.skip("this CPU has no AVX2: the AVX2 build cannot run here")
    env = {**os.environ, "PORTARUN_XLA_NATIVE_MARCH": march, "PORTARUN_CACHE_DIR": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    result = subprocess.run([sys.executable, "-c", _SUBPROCESS_CHECK.format(isa=isa)], env=env, cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok " + isa)


def _call(x, w, scale, zero, n, bits, block):
    import jax.numpy as jnp

    call = jax.ffi.ffi_call(native.TARGET, jax.ShapeDtypeStruct((x.shape[0], n), jnp.float32),
                            vmap_method="sequential")
    return call(x, w, scale, zero, bits=np.int64(bits), block=np.int64(block))


@pytest.mark.parametrize("case", ["tile width", "block vs rows", "x columns", "scale columns", "n past the tiles",
                                  "zero point shape", "bits", "4-bit block of half quads"])
def test_the_kernel_refuses_operands_that_do_not_fit_its_layout(case):
    assert native.kernel().available
    x = np.ones((2, 128), np.float32)
    w = np.ones((2, 1, 128, 64), np.int8)  # 2 tiles, 1 group of 128 rows, int8
    scale = np.ones((1, 128), np.float32)
    zero = np.zeros((0,), np.int8)
    n, bits, block = 100, 8, 128
    if case == "tile width":
        w = np.ones((2, 1, 128, 32), np.int8)
    elif case == "block vs rows":
        bits = 4  # 128 stored rows are 256 rows of 4-bit values, not 128
    elif case == "x columns":
        x = np.ones((2, 64), np.float32)
    elif case == "scale columns":
        scale = np.ones((1, 64), np.float32)
    elif case == "n past the tiles":
        n = 200
    elif case == "zero point shape":
        zero = np.zeros((1, 64), np.int8)
    elif case == "4-bit block of half quads":  # the 4-bit layout takes blocks of whole quads of 4 rows
        x, w, bits, block = np.ones((2, 130), np.float32), np.ones((2, 1, 65, 64), np.int8), 4, 130
    else:
        bits = 3
    np.asarray(_call(np.ones((2, 128), np.float32), np.ones((2, 1, 128, 64), np.int8),
                     np.ones((1, 128), np.float32), np.zeros((0,), np.int8), 100, 8, 128))  # the valid call runs
    with pytest.raises(Exception, match="portarun_qmatmul"):
        np.asarray(_call(x, w, scale, zero, n, bits, block))


def test_one_executable_runs_from_many_threads():
    model = _dequantize_matmul("int4", "block", zero_point=True, k=256, n=640)
    rng = np.random.default_rng(4)
    feeds = [{"x": rng.standard_normal((1, 3, 256)).astype(np.float32)} for _ in range(16)]
    want = [portarun.compile(model, "reference:cpu", "int4-weight").run(f)["y"] for f in feeds]
    exe = portarun.compile(model, "xla:cpu", "int4-weight")
    assert exe.provenance.details["quantized_matmul"] == "native"
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda f: exe.run(f)["y"], feeds * 4))
    for index, y in enumerate(got):
        np.testing.assert_allclose(y, want[index % len(feeds)], rtol=1e-4, atol=1e-4)


def test_an_artifact_with_the_kernel_saves_and_loads(tmp_path):
    model = _dequantize_matmul("int8", "channel", zero_point=True, k=128, n=96)
    x = np.random.default_rng(6).standard_normal((2, 3, 128)).astype(np.float32)
    exe = portarun.compile(model, "xla:cpu", "int8-weight")
    want = exe.run({"x": x})["y"]
    exe.save(tmp_path / "artifact")
    loaded = portarun.load_compiled(tmp_path / "artifact")
    assert loaded.provenance.details["quantized_matmul"] == "native"
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], want)


def test_a_failing_build_is_a_reason_not_an_exception(monkeypatch, tmp_path):
    broken = tmp_path / "c++"
    broken.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'broken 1.0'; exit 0; fi\n"
                      "echo 'error: no such thing' >&2; exit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CXX", str(broken))
    monkeypatch.setenv("PORTARUN_CACHE_DIR", str(tmp_path / "cache"))
    built = native._build_and_register()
    assert not built.available and "failed to build qmatmul_kernel.cc (error: no such thing)" in built.detail
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # the half-written library is gone
    monkeypatch.setenv("PORTARUN_XLA_NATIVE", "0")
    assert native._build_and_register() == native.Kernel(False, "PORTARUN_XLA_NATIVE=0")


def test_an_artifact_built_with_the_kernel_is_refused_where_it_cannot_be_built(monkeypatch, tmp_path):
    model = _dequantize_matmul("int8", "channel", zero_point=False, k=128, n=96)
    portarun.compile(model, "xla:cpu", "int8-weight").save(tmp_path / "artifact")
    monkeypatch.setattr(native, "_kernel", native.Kernel(False, "no C++ compiler (set CXX or install g++)"))
    with pytest.raises(portarun.ArtifactIncompatibleError, match="no C.. compiler"):
        portarun.load_compiled(tmp_path / "artifact")
    rebuilt = portarun.load_compiled(tmp_path / "artifact", rebuild=True)
    assert rebuilt.provenance.details["quantized_matmul"] == "int8dot"


@pytest.mark.parametrize("rows", [1, 2, 4, 5, 7, 9])
@pytest.mark.parametrize("dtype,granularity", [("int8", "channel"), ("int4", "block")])
def test_every_row_count_matches_the_reference(rows, dtype, granularity):
    """Rows go through the kernel several at a time (one widening of the weights for four rows of x at 8 bits,
    for two rows' two digits at 4 bits) and the rest one by one: every remainder of that blocking computes
    what the reference does."""
    model = _dequantize_matmul(dtype, granularity, zero_point=True, k=96, n=130)
    x = (np.random.default_rng(rows).standard_normal((1, rows, 96)) + 0.5).astype(np.float32)
    precision = "int4-weight" if "4" in dtype else "int8-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x})["y"]
    got = portarun.compile(model, "xla:cpu", precision, quantized_matmul="native").run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _per_row_error(got, want):
    """The largest error of each row of outputs relative to that row's largest value."""
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1]).astype(np.float64)
    return np.max(np.abs(got - want), axis=1) / np.maximum(np.max(np.abs(want), axis=1), 1e-300)


def test_4_bit_rows_of_every_magnitude_are_float_accurate():
    """4-bit layers take x as two 16-bit digits per block (error <= 2^-31 of the block's largest value):
    rows from 1e-20 to 1e30, with one huge outlier in a block, keep float32 accuracy; a zero row is 0."""
    model = _dequantize_matmul("int4", "block", zero_point=True, k=256, n=96, block=32)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 6, 256)).astype(np.float32)
    x[0, 0] = 0
    x[0, 1] *= np.float32(1e-40)  # subnormal
    x[0, 2] *= np.float32(1e-20)
    x[0, 4] *= np.float32(1e30)
    x[0, 5, 7] = 1e6  # an outlier: the rest of its block sits on the finer digit
    want = portarun.compile(model, "reference:cpu", "int4-weight").run({"x": x})["y"]
    got = portarun.compile(model, "xla:cpu", "int4-weight", quantized_matmul="native").run({"x": x})["y"]
    assert not got[0, 0].any()
    errors = _per_row_error(got[:, 1:], want[:, 1:])
    # subnormal inputs: the grid step underflows (as flush-to-zero kernels do), off by less than float's
    # smallest normal value
    assert np.max(np.abs(got[0, 1] - want[0, 1])) < np.finfo(np.float32).tiny
    assert (errors[1:] < 1e-5).all(), errors
    # the outlier's block: its other 31 values are ~1e-6 of it, yet carried to float accuracy
    without = x.copy()
    without[0, 5, 7] = 0
    scale = want[0, 5] - portarun.compile(model, "reference:cpu", "int4-weight").run({"x": without})["y"][0, 5]
    assert np.max(np.abs(got[0, 5] - want[0, 5])) < 1e-5 * np.max(np.abs(scale)) + 1e-5 * np.max(np.abs(want[0, 5]))


def test_a_4_bit_per_channel_weight_longer_than_one_integer_chunk():
    """Per channel, a 4-bit block is the whole K: past 4,096 rows an int32 sum of 16-bit digits times 4-bit
    weights could overflow, so the kernel adds int32 chunks in int64 (K = 4,102, padded to whole quads)."""
    model = _dequantize_matmul("int4", "channel", zero_point=True, k=4102, n=70)
    x = (np.random.default_rng(6).standard_normal((1, 3, 4102)) + 2.0).astype(np.float32)  # sums far from 0
    want = portarun.compile(model, "reference:cpu", "int4-weight").run({"x": x})["y"]
    exe = portarun.compile(model, "xla:cpu", "int4-weight", quantized_matmul="native")
    assert exe.provenance.details["rewrites"]["qmatmul"] == 1
    assert (_per_row_error(exe.run({"x": x})["y"], want) < 1e-5).all()


def test_a_4_bit_block_of_half_quads_stays_a_float_matmul():
    """Blocks of 6 rows do not fill the kernel's quads of 4: that MatMul is left unfused (dequantized to
    float), and still computes what the reference does."""
    model = _dequantize_matmul("int4", "block", zero_point=False, k=48, n=20, block=6)
    x = np.random.default_rng(7).standard_normal((1, 2, 48)).astype(np.float32)
    want = portarun.compile(model, "reference:cpu", "int4-weight").run({"x": x})["y"]
    exe = portarun.compile(model, "xla:cpu", "int4-weight", quantized_matmul="native")
    assert exe.provenance.details["rewrites"].get("qmatmul", 0) == 0
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)
