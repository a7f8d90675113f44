"""portarun: one ONNX model, run on any vendor's stack, with proof that the numbers match.

    import portarun
    model = portarun.load("model.onnx")
    exe = portarun.compile(model, "onnxruntime:cpu", precision="fp32")
    outputs = exe.run({"x": array})

Importing portarun imports no backend and no vendor SDK.
"""

from ._version import __version__
from .errors import *  # noqa: F401,F403 - the exception hierarchy is public API (no heavy imports)
from .errors import PortarunError

# public name -> the module that defines it. Loaded on first use (PEP 562), so `import portarun`
# (and `portarun --help`) costs milliseconds: onnx alone takes over a second to import.
_LAZY: dict[str, str] = {
    "cache_dir": "api", "compile": "api", "load": "api", "load_compiled": "api",
    "Backend": "backend", "Executable": "backend", "Provenance": "backend",
    "Comparison": "compare", "Tolerance": "compare", "compare": "compare",
    "random_feeds": "feeds", "Model": "model",
    "AccuracyFloor": "quantize", "QuantizedModel": "quantize", "RandomCalibration": "quantize",
    "BackendInfo": "registry", "available_targets": "registry", "get_backend": "registry",
    "list_backends": "registry",
    "Device": "types", "Precision": "types", "Support": "types", "Target": "types", "TensorSpec": "types",
    "undefined_behaviour": "undefined",
}
# submodules that are public names themselves: portarun.models, and the callable modules
# portarun.quantize(model, precision), portarun.export(module, inputs), portarun.generate(exe, ids, n),
# and portarun.serve (Ray Serve; imports ray only when called)
_SUBMODULES = ("models", "quantize", "export", "generate", "serve")

__all__ = [
    "__version__", "Backend", "BackendInfo", "Comparison", "Device", "Executable", "Model", "PortarunError",
    "Precision", "Provenance", "Support", "Target", "TensorSpec", "Tolerance", "available_targets", "cache_dir",
    "compare", "compile", "get_backend", "list_backends", "load", "load_compiled", "random_feeds",
    "AccuracyFloor", "QuantizedModel", "RandomCalibration", "models", "quantize", "undefined_behaviour",
]


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'portarun' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
