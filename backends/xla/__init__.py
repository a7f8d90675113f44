"""XLA backend: ONNX lowered to JAX, compiled by XLA on CPU, GPU and TPU. JAX loads on first use."""

from .backend import XlaBackend, XlaExecutable

__all__ = ["XlaBackend", "XlaExecutable"]
