"""Which ONNX Runtime execution providers a target means, and their options.

Kept apart from the session code so the mapping can be tested on any machine:
building provider options needs no GPU, only the EP names and documented keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portarun.errors import BackendUnavailableError
from portarun.types import Precision, Target

# Device kind -> candidate EPs, preferred first. ORT removed the ROCm EP in 1.23;
# AMD GPUs go through MIGraphX there, the ROCm EP only on older builds that still have it.
EP_BY_DEVICE: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider",),
    "tensorrt": ("TensorrtExecutionProvider",),
    "rocm": ("MIGraphXExecutionProvider", "ROCMExecutionProvider"),
    "migraphx": ("MIGraphXExecutionProvider",),
    "openvino": ("OpenVINOExecutionProvider",),
    "directml": ("DmlExecutionProvider",),
}

INSTALL_BY_DEVICE: dict[str, str] = {
    "cpu": "pip install 'portarun[onnxruntime]'",
    "cuda": "pip install onnxruntime-gpu in place of onnxruntime, with CUDA 12 and cuDNN 9 libraries",
    "tensorrt": "pip install onnxruntime-gpu in place of onnxruntime, with TensorRT 10 libraries on LD_LIBRARY_PATH",
    "rocm": "install the ROCm build of onnxruntime with the MIGraphX EP (pip install onnxruntime-migraphx, "
            "ROCm 6+ and MIGraphX runtime)",
    "migraphx": "install the ROCm build of onnxruntime with the MIGraphX EP (pip install onnxruntime-migraphx)",
    "openvino": "pip install onnxruntime-openvino in place of onnxruntime",
    "directml": "pip install onnxruntime-directml in place of onnxruntime (Windows)",
}


@dataclass(frozen=True)
class ExecutionProviderChoice:
    providers: list[str]
    provider_options: list[dict[str, Any]]


def _cache_subdir(cache_dir: Path, kind: str) -> str:
    path = cache_dir / kind
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def provider_options_for(ep: str, target: Target, precision: Precision, user: dict[str, Any],
                         cache_dir: Path | None) -> dict[str, Any]:
    """Documented provider options for ``ep`` at ``precision``; user options win."""
    device_id = target.index or 0
    options: dict[str, Any] = {}
    if ep == "CUDAExecutionProvider":
        options = {"device_id": device_id}
    elif ep == "TensorrtExecutionProvider":
        options = {"device_id": device_id,
                   "trt_fp16_enable": precision is Precision.FP16,
                   "trt_int8_enable": precision is Precision.INT8}
        if cache_dir is not None:
            # One cache folder for ORT's TRT EP and portarun's own TensorRT backend's engines.
            engines = _cache_subdir(cache_dir.parent / "tensorrt", "ort-trt-ep")
            options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": engines,
                            "trt_timing_cache_enable": True, "trt_timing_cache_path": engines})
    elif ep == "MIGraphXExecutionProvider":
        options = {"device_id": device_id,
                   "migraphx_fp16_enable": "1" if precision is Precision.FP16 else "0",
                   "migraphx_int8_enable": "1" if precision is Precision.INT8 else "0"}
        if cache_dir is not None:
            models = _cache_subdir(cache_dir, "migraphx")
            options.update({"migraphx_save_compiled_model": "1", "migraphx_load_compiled_model": "1",
                            "migraphx_save_model_path": models, "migraphx_load_model_path": models})
    elif ep == "ROCMExecutionProvider":
        options = {"device_id": device_id}
    elif ep == "OpenVINOExecutionProvider":
        options = {"device_type": "CPU" if target.index is None else f"GPU.{target.index}",
                   "precision": {"fp16": "FP16"}.get(precision.value, "FP32")}
        if cache_dir is not None:
            options["cache_dir"] = _cache_subdir(cache_dir, "openvino-ep")
    elif ep == "DmlExecutionProvider":
        options = {"device_id": device_id}
    options.update(user)
    return options


def choose_providers(target: Target, available: set[str], precision: Precision,
                     user_options: dict[str, Any], cache_dir: Path | None) -> ExecutionProviderChoice:
    """The EP list for a session on ``target``; CPU last so unsupported nodes still run."""
    device = target.device or "cpu"
    candidates = EP_BY_DEVICE.get(device)
    if candidates is None:
        raise BackendUnavailableError(f"onnxruntime has no target '{target}'", backend="onnxruntime",
                                      hint="targets: " + ", ".join(f"onnxruntime:{k}" for k in EP_BY_DEVICE))
    present = [ep for ep in candidates if ep in available]
    if not present:
        raise BackendUnavailableError(
            f"onnxruntime:{device} needs {' or '.join(candidates)}, which this onnxruntime build lacks "
            f"(it has {', '.join(sorted(available))})", backend="onnxruntime", hint=INSTALL_BY_DEVICE[device])
    primary = present[0]
    providers = [primary]
    if primary == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")  # TRT hands unsupported subgraphs to CUDA first
    if primary != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    options = [provider_options_for(ep, target, precision, user_options if ep == primary else {}, cache_dir)
               for ep in providers]
    return ExecutionProviderChoice(providers, options)

