"""Engine cache: serialized engines and timing caches, keyed by everything an engine depends on.

A TensorRT engine is specific to the model, the TensorRT version, the GPU (model and
compute capability), the precision, the optimization profile and the builder
settings. The key holds exactly those, as content: the model's sha256, never its
path (a model loaded from a temporary folder gets the same key as the same model
anywhere else), and never the cache folder itself.

```
<cache>/tensorrt/
  engines/<key>.plan      serialized engine
  engines/<key>.json      the key in clear, for people and for `portarun` diagnostics
  timing/<gpu-trt>.cache  timing cache, shared by every model on that GPU + TensorRT version
  ort-trt-ep/...          ONNX Runtime's TensorRT EP engines (see portarun_backends.onnxruntime.providers)
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from portarun.plugin import atomic_write_bytes, atomic_write_text

from .cuda import GpuInfo
from .profiles import Profile, profile_to_dict

KEY_SCHEMA = 1


@dataclass(frozen=True)
class EngineKey:
    model_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profiles: str  # canonical JSON of {input: [min, opt, max]}
    build: str  # canonical JSON of the builder settings that change the engine

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["profiles"] = json.loads(self.profiles)
        data["build"] = json.loads(self.build)
        data["schema"] = KEY_SCHEMA
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineKey":
        return cls(model_sha256=data["model_sha256"], trt_version=data["trt_version"], gpu_name=data["gpu_name"],
                   compute_capability=data["compute_capability"], precision=data["precision"],
                   profiles=_canonical(data["profiles"]), build=_canonical(data["build"]))

    @property
    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def engine_key(model_sha256: str, trt_version: str, gpu: GpuInfo, precision: str, profile: Profile,
               build: dict[str, Any]) -> EngineKey:
    """The key of one engine. ``build`` holds only settings that change the engine (no paths)."""
    return EngineKey(model_sha256=model_sha256, trt_version=str(trt_version), gpu_name=gpu.name,
                     compute_capability=gpu.compute_capability, precision=str(precision),
                     profiles=_canonical(profile_to_dict(profile)), build=_canonical(build))


def timing_cache_name(trt_version: str, gpu: GpuInfo) -> str:
    text = _canonical({"trt": str(trt_version), "gpu": gpu.name, "cc": gpu.compute_capability})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class EngineCache:
    """Engines and timing caches under ``root``; every write is atomic."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / "engines" / f"{key.digest}.plan"

    def load_engine(self, key: EngineKey) -> bytes | None:
        path = self.engine_path(key)
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None

    def store_engine(self, key: EngineKey, engine: bytes) -> Path:
        path = self.engine_path(key)
        atomic_write_bytes(path, engine)
        atomic_write_text(path.with_suffix(".json"), json.dumps(key.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def timing_path(self, trt_version: str, gpu: GpuInfo) -> Path:
        return self.root / "timing" / f"{timing_cache_name(trt_version, gpu)}.cache"

    def load_timing(self, trt_version: str, gpu: GpuInfo) -> bytes | None:
        path = self.timing_path(trt_version, gpu)
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None

    def store_timing(self, trt_version: str, gpu: GpuInfo, data: bytes) -> None:
        if data:
            atomic_write_bytes(self.timing_path(trt_version, gpu), data)
