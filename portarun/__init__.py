"""portarun: one ONNX model, run on any vendor's stack, with proof that the numbers match.

    import portarun
    model = portarun.load("model.onnx")
    exe = portarun.compile(model, "onnxruntime:cpu", precision="fp32")
    outputs = exe.run({"x": array})

Importing portarun imports no backend and no vendor SDK.
"""

from ._version import __version__
from .api import cache_dir, compile, load, load_compiled
from .backend import Backend, Executable, Provenance
from .compare import Comparison, Tolerance, compare
from .errors import *  # noqa: F401,F403 - the exception hierarchy is public API
from .errors import PortarunError
from . import models
from .feeds import random_feeds
from .model import Model
from . import quantize  # a callable module: portarun.quantize(model, precision, ...)
from .quantize import AccuracyFloor, QuantizedModel, RandomCalibration
from .registry import BackendInfo, available_targets, get_backend, list_backends
from .types import Device, Precision, Support, Target, TensorSpec

__all__ = [
    "__version__", "Backend", "BackendInfo", "Comparison", "Device", "Executable", "Model", "PortarunError",
    "Precision", "Provenance", "Support", "Target", "TensorSpec", "Tolerance", "available_targets", "cache_dir",
    "compare", "compile", "get_backend", "list_backends", "load", "load_compiled", "random_feeds",
    "AccuracyFloor", "QuantizedModel", "RandomCalibration", "models", "quantize",
]


def __getattr__(name: str):
    # portarun.export / generate / serve load on first use: export imports torch lazily, but
    # neither is needed to run a model. Both are callable modules (portarun.export(module, inputs)).
    if name in ("export", "generate", "serve"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'portarun' has no attribute '{name}'")
