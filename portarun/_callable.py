"""Modules that are also functions: ``portarun.quantize(...)``, ``portarun.export(...)``, ``portarun.generate(...)``."""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_module_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the module ``module_name`` callable as ``function``.

    Importing a submodule sets the package attribute of the same name to the module, so a plain
    function called like its module would be shadowed; a module whose class has ``__call__``
    is both (``portarun.quantize(model, "int8")`` and ``portarun.quantize.RandomCalibration``).
    """
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __doc__ = f"``{module_name}`` is this module and also the function ``{function.__name__}``."

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    module.__class__ = CallableModule
