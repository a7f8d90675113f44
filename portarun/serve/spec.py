"""What a serving replica needs to build its executable: a plain, picklable description.

The driver resolves everything it can (name, target, batch settings) and each Ray Serve
replica compiles its own executable from this, so replicas on other nodes need only the
model source, not the driver's objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class ServeSpec:
    source: str | bytes  # a model path, builtin:NAME, an artifact directory, or a serialized ONNX model
    target: str | None
    precision: str = "fp32"
    name: str = "model"
    options: dict[str, Any] = field(default_factory=dict)
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    is_artifact: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise UsageError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.batch_wait_ms < 0:
            raise UsageError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")

    def build(self) -> Any:
        """Compile (or load) the executable this spec describes; runs inside each replica."""
        from .. import api

        if self.is_artifact:
            return api.load_compiled(self.source, self.target)
        source = self.source
        if isinstance(source, bytes):
            import onnx

            source = api.load(onnx.load_from_string(source))
            source.name = self.name
        return api.compile(source, self.target, self.precision, **self.options)


def default_name(source: Any) -> str:
    """The served model's name: the built-in's name or the file's stem (``mlp``, ``resnet50``)."""
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return name
    text = os.path.basename(os.fspath(source).rstrip("/"))
    text = text.split(":", 1)[1] if text.startswith("builtin:") else text
    return text.split(".", 1)[0] or "model"
