"""OpenVINO backend (``openvino:cpu``, ``:gpu``, ``:npu``, ``:auto``), with NNCF as its native quantizer."""

from .backend import OpenVinoBackend
from .executable import OpenVinoExecutable

__all__ = ["OpenVinoBackend", "OpenVinoExecutable"]
