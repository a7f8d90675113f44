"""A validated Model from whatever names one: a path, an ``onnx.ModelProto``, a built-in name.

Below ``portarun.quantize`` and ``portarun.api`` (both load models), above the model zoo.
"""

from __future__ import annotations

import os
import onnx

from .artifact import is_artifact
from .errors import ModelLoadError, ModelNotFoundError
from .model import Model

from .models import BUILTIN_PREFIX, build, names, resolve_builtin


def load(source: "Model | onnx.ModelProto | str | os.PathLike", *, check: bool = True) -> Model:
    """A validated Model from a path, an ``onnx.ModelProto``, or a built-in name (``builtin:mlp``).

    A bare built-in name (``mlp``) works too when no file of that name exists.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return Model.from_proto(source, check=check)
    text = os.fspath(source)
    builtin = resolve_builtin(text)
    if builtin is not None:
        return build(builtin)
    if is_artifact(text):
        raise ModelLoadError(f"'{text}' is a compiled artifact, not an ONNX file",
                             hint="use portarun.load_compiled() or pass it to `portarun run`")
    try:
        return Model.load(text, check=check)
    except ModelNotFoundError as exc:
        exc.hint = f"check the path; built-in models are {', '.join(BUILTIN_PREFIX + n for n in names())}"
        raise
