"""Built-in models, generated in ONNX directly from a fixed seed (no downloads, no torch).

``build("mlp")`` returns a validated Model; the same name, seed and options give
byte-identical bytes. ``names()`` lists what exists; each entry also records
the feed sizes its symbolic dims default to (``default_dims``).
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelNotFoundError
from ..model import Model


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    module: str  # relative module holding ``build(**kwargs) -> Model``
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    default_dims: dict[str, int] = field(default_factory=dict)
    kind: str = "model"  # "model", or "decoder" for KV-cache decoders (generation loop)

    def builder(self) -> Callable[..., Model]:
        return importlib.import_module(self.module, __name__).build


_REGISTRY: dict[str, BuiltinModel] = {}

BUILTIN_PREFIX = "builtin:"


def register(entry: BuiltinModel) -> None:
    _REGISTRY[entry.name] = entry


register(BuiltinModel("mlp", ".mlp", "MLP 64-256-256-10 (Gemm, Relu)", default_dims={"batch": 1}))
register(BuiltinModel("cnn", ".cnn", "CNN on 3x32x32 (Conv, BatchNormalization, Relu, MaxPool, GlobalAveragePool)",
                      default_dims={"batch": 1}))
register(BuiltinModel("transformer", ".transformer",
                      "transformer encoder block, hidden 256, 4 heads (MatMul, Softmax, LayerNormalization, Erf GELU)",
                      default_dims={"batch": 1, "seq": 128}))
# Llama-style decoders with a KV cache (portarun.generate); sizes in portarun/models/decoder.py
_DECODER_DIMS = {"batch": 1, "seq": 16, "past_seq": 0, "total_seq": 16}
register(BuiltinModel("decoder-tiny", ".decoder", "Llama-style decoder, tiny (hidden 64, 2 layers, GQA 4/2 heads, vocab 256), KV cache", kwargs=dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, name="decoder-tiny"), default_dims=_DECODER_DIMS, kind="decoder"))
register(BuiltinModel("decoder-small", ".decoder", "Llama-style decoder, ~100M params (hidden 768, 8 layers, GQA 12/4 heads, vocab 32000), KV cache", kwargs=dict(hidden=768, layers=8, heads=12, kv_heads=4, intermediate=2048, vocab=32000, name="decoder-small"), default_dims=_DECODER_DIMS, kind="decoder"))
register(BuiltinModel("decoder-1b", ".decoder", "Llama-style decoder, TinyLlama-1.1B dims (hidden 2048, 22 layers, GQA 32/4 heads), KV cache, external data", kwargs=dict(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632, vocab=32000, name="decoder-1b"), default_dims=_DECODER_DIMS, kind="decoder"))


def names(kind: str | None = None) -> list[str]:
    return [n for n, e in _REGISTRY.items() if kind is None or e.kind == kind]


def get(name: str) -> BuiltinModel:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise ModelNotFoundError(f"no built-in model named '{name}'",
                                 hint=f"did you mean '{close[0]}'?" if close else f"built-ins: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def resolve_builtin(source: "str | os.PathLike") -> str | None:
    """The built-in model name ``source`` refers to, or None when it refers to a file.

    ``builtin:NAME`` always means the built-in NAME (returned even when unknown, so ``get``/``build``
    answer with a did-you-mean); a bare ``NAME`` means a built-in when one is registered under that
    name and no file of that name exists. The one place this rule lives (load, run, bench, conformance).
    """
    text = os.fspath(source)
    if text.startswith(BUILTIN_PREFIX):
        return text[len(BUILTIN_PREFIX):]
    if text in _REGISTRY and not Path(text).exists():
        return text
    return None


def builtin_default_dims(source: "str | os.PathLike") -> dict[str, int]:
    """The default feed sizes of the built-in ``source`` names (``{}`` for a file or an unknown name)."""
    name = resolve_builtin(source)
    entry = _REGISTRY.get(name) if name is not None else None
    return dict(entry.default_dims) if entry is not None else {}


def default_dims_of(model: Any) -> dict[str, int]:
    """The default feed sizes of a model built from the registry (matched by its name; ``{}`` for others)."""
    entry = _REGISTRY.get(getattr(model, "name", None))
    return dict(entry.default_dims) if entry is not None else {}


def build(name: str, *, seed: int = 0, **overrides: Any) -> Model:
    """Build the named built-in model; ``overrides`` change its size arguments."""
    entry = get(name)
    return entry.builder()(seed=seed, **{**entry.kwargs, **overrides})


__all__ = ["BUILTIN_PREFIX", "BuiltinModel", "build", "builtin_default_dims", "get", "names", "register",
           "resolve_builtin"]
