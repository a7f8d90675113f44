"""The public entry points: load, compile, load_compiled, run helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from .backend import Executable
from .errors import ModelNotFoundError
from .model import Model
from .registry import get_backend, resolve_target
from .types import Precision, Target

BUILTIN_PREFIX = "builtin:"


def cache_dir() -> Path:
    """Where portarun keeps caches (EP engines, compiled kernels, generated test data).

    ``PORTARUN_CACHE_DIR`` wins, then ``$XDG_CACHE_HOME/portarun``, then ``~/.cache/portarun``.
    """
    explicit = os.environ.get("PORTARUN_CACHE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "portarun"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(source: "Model | onnx.ModelProto | str | os.PathLike", *, check: bool = True) -> Model:
    """A validated Model from a path, an ``onnx.ModelProto``, or a built-in name (``builtin:mlp``).

    A bare built-in name (``mlp``) works too when no file of that name exists.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return Model.from_proto(source, check=check)
    text = os.fspath(source)
    from . import models

    if text.startswith(BUILTIN_PREFIX):
        return models.build(text[len(BUILTIN_PREFIX):])
    if not Path(text).exists() and text in models.names():
        return models.build(text)
    try:
        return Model.load(text, check=check)
    except ModelNotFoundError as exc:
        exc.hint = f"check the path; built-in models are {', '.join(BUILTIN_PREFIX + n for n in models.names())}"
        raise


def compile(model: "Model | str | os.PathLike", target: Target | str, precision: Precision | str = "fp32",
            **options: Any) -> Executable:
    """Compile ``model`` for ``target`` (e.g. ``"onnxruntime:cpu"``) at ``precision``.

    Backend-specific ``options`` are listed by ``portarun backends`` and each backend's ``options``.
    """
    loaded = load(model)
    resolved = resolve_target(target)
    backend = get_backend(resolved.backend)
    return backend.compile(loaded, resolved, precision, **options)


def load_compiled(path: str | os.PathLike, target: Target | str | None = None, *,
                  rebuild: bool = False) -> Executable:
    """Load an artifact written by ``Executable.save``; ``rebuild`` recompiles when it does not fit here."""
    from .artifact import load_artifact

    return load_artifact(path, target, rebuild=rebuild)
