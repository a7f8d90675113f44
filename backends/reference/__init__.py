"""Reference backend: onnx's ReferenceEvaluator, the oracle for parity checks."""

from .backend import ReferenceBackend, ReferenceExecutable

__all__ = ["ReferenceBackend", "ReferenceExecutable"]
