"""ONNX Runtime backend (``onnxruntime:cpu``, ``:cuda``, ``:tensorrt``, ``:rocm``, ``:openvino``)."""

from .backend import OnnxRuntimeBackend, OnnxRuntimeExecutable

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeExecutable"]
