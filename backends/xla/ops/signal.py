"""DFT (jnp.fft)."""

from __future__ import annotations

from . import op
from ._common import jnp, norm_axis, np, static_ints


@op("DFT", since=17)
def dft(n, x, dft_length=None, axis_input=None):
    x = jnp.asarray(x)
    rank = x.ndim
    if n.opset >= 20:
        axis = int(static_ints(axis_input, "DFT axis")[0]) if axis_input is not None else -2
    else:
        axis = n.attr("axis", 1)
    axis = norm_axis(axis, rank)
    if x.shape[-1] == 2:
        signal = x[..., 0] + 1j * x[..., 1]
        real_input = False
    else:
        signal = x[..., 0]
        real_input = True
    length = int(static_ints(dft_length, "DFT length")[0]) if dft_length is not None else signal.shape[axis]
    if n.attr("inverse", 0):
        out = jnp.fft.ifft(signal, n=length, axis=axis)
    else:
        out = jnp.fft.fft(signal, n=length, axis=axis)
        if n.attr("onesided", 0):
            out = jnp.take(out, np.arange(length // 2 + 1), axis=axis)
    del real_input
    return jnp.stack([jnp.real(out), jnp.imag(out)], axis=-1).astype(x.dtype)
