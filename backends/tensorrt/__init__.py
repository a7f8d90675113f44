"""TensorRT backend (``tensorrt:cuda[:N]``). Importing it imports neither TensorRT nor CUDA."""

from .backend import TensorRtBackend
from .runtime import TensorRtExecutable

__all__ = ["TensorRtBackend", "TensorRtExecutable"]
