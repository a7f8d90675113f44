"""Weight layout for the quantized fused ops: 4-bit values two per byte, and column chunks for the CPU form."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("jax")

from portarun_backends.xla.quant import packing  # noqa: E402


@pytest.mark.parametrize("kind,lo,hi", [("int4", -8, 8), ("uint4", 0, 16)])
def test_pack_halves_round_trips_every_4_bit_value_on_the_device(kind, lo, hi):
    rng = np.random.default_rng(0)
    values = np.concatenate([np.arange(lo, hi), rng.integers(lo, hi, 48)]).reshape(4, 16)
    array = values.astype(getattr(ml_dtypes, kind))
    packed = packing.pack_halves(array, axis=1)
    assert packed.dtype == np.uint8 and packed.shape == (4, 8)  # half a byte per value
    assert packing.packing_of(array) == kind
    np.testing.assert_array_equal(np.asarray(packing.unpack_halves(packed, kind, axis=1)), values)


def test_an_odd_axis_is_not_packed_and_8_bit_weights_need_no_packing():
    assert packing.pack_halves(np.zeros((3, 5), ml_dtypes.int4), axis=1) is None
    assert packing.packing_of(np.zeros((2, 2), np.int8)) is None


def test_split_columns_pads_the_last_chunk_with_zeros():
    array = np.arange(2 * 300).reshape(2, 300)
    chunks = packing.split_columns(array, 128)
    assert chunks.shape == (3, 2, 128)
    np.testing.assert_array_equal(np.concatenate(list(chunks), axis=1)[:, :300], array)
    assert not chunks[2, :, 300 - 256:].any()
    # a weight that fits one chunk is not split; a wide one gets a multiple of 128 dividing N
    assert packing.chunk_width(64, 300) == 300
    assert packing.chunk_width(4096, 4096, limit=4096 * 512) == 512
