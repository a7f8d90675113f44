"""Serving: Ray Serve with the Open Inference Protocol (KServe v2), and Triton model repositories.

``portarun.serve(model, "onnxruntime:cpu")`` is this package and also the function (the same
callable-module trick as ``portarun.quantize``). Ray and tritonclient are imported on first use.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .api import ServeHandle, serve
from .spec import ServeSpec

__all__ = ["ServeHandle", "ServeSpec", "serve"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> ServeHandle:
        return serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
