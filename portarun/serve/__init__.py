"""Serving: Ray Serve with the Open Inference Protocol (KServe v2), and Triton model repositories.

``portarun.serve(model, "onnxruntime:cpu")`` is this package and also the function (the same
callable-module trick as ``portarun.quantize``). Ray and tritonclient are imported on first use.
"""

from __future__ import annotations

from .._callable import make_module_callable
from .api import ServeHandle, serve
from .spec import ServeSpec

__all__ = ["ServeHandle", "ServeSpec", "serve"]

make_module_callable(__name__, serve)
