"""Does a candidate fit its device: weights + KV cache at its batch and sequence length."""

from __future__ import annotations


def kv_cache_bytes(*, layers_kv_tensors: int, kv_heads: int, head_dim: int, itemsize: int, batch: int,
                   length: int) -> int:
    """Bytes of a full KV cache: one [batch, kv_heads, length, head_dim] tensor per past input.

    ``layers_kv_tensors`` counts the cache inputs (2 per layer: key and value); ``length`` is
    prompt + output tokens, the longest context the cache must hold.
    """
    return layers_kv_tensors * kv_heads * head_dim * itemsize * batch * length


def gib(value: float | None) -> str:
    return "?" if value is None else f"{value / 2**30:.3g} GiB"


__all__ = ["gib", "kv_cache_bytes"]
