"""Which ONNX Runtime execution providers a target means, and their options.

Kept apart from the session code so the mapping can be tested on any machine:
building provider options needs no GPU, only the EP names and documented keys.

AMD GPUs (``onnxruntime:rocm``, alias ``rocm:gpu``): ONNX Runtime 1.23 removed the ROCm EP,
so the MIGraphX EP comes first and the ROCm EP is used only on older builds that have
it and lack MIGraphX. MIGraphX's option names changed in 1.23 (one
``migraphx_model_cache_dir`` replaced the save/load pairs of 1.19-1.22), so the options
are built for the installed ONNX Runtime version; an unknown key would make ORT drop
the EP and fall back to the CPU.

TensorRT EP engines (``onnxruntime:tensorrt``) live beside portarun's own TensorRT
backend's engines, under ``<cache>/tensorrt/ort-trt-ep/ort<version>-trt<version>/``: ORT
names engine files by graph hash and GPU architecture (``_sm80``) but not by ORT or
TensorRT version, so the folder carries those, and never a temporary path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from portarun.plugin import BackendUnavailableError, Precision, Target, UnsupportedError

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
    "rocm": "needs an AMD GPU with ROCm 6+ and MIGraphX, and onnxruntime with MIGraphXExecutionProvider "
            "(ONNX Runtime 1.23 removed the ROCm EP): pip install onnxruntime-migraphx in place of onnxruntime",
    "migraphx": "needs an AMD GPU with ROCm 6+ and MIGraphX: pip install onnxruntime-migraphx in place of onnxruntime",
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


def _version_tuple(version: str | None) -> tuple[int, ...]:
    parts = []
    for piece in str(version or "").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def tensorrt_library_version() -> str | None:
    """Version of the TensorRT libraries ORT's TensorRT EP would load, when pip installed them."""
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-libs", "tensorrt-cu13-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def shared_cache_root(cache_dir: Path) -> Path:
    """The portarun cache root: the ORT backend passes ``<root>/onnxruntime`` unless the user chose a folder."""
    return cache_dir.parent if cache_dir.name == "onnxruntime" else cache_dir


def ort_trt_ep_cache_dir(cache_dir: Path, ort: str | None, trt: str | None) -> Path:
    """Where the TensorRT EP keeps engines and timing caches; versions in the name, no temporary paths."""
    label = f"ort{ort or 'unknown'}-trt{trt or 'system'}"
    return shared_cache_root(cache_dir) / "tensorrt" / "ort-trt-ep" / label


def migraphx_options(precision: Precision, device_id: int, cache_dir: Path | None,
                     ort: str | None) -> dict[str, Any]:
    """MIGraphX EP options for the installed ONNX Runtime version (names changed in 1.23).

    Quantized precisions set no int8 flag: the model already carries its Q/DQ nodes, which
    MIGraphX fuses into int8 kernels; ``migraphx_int8_enable`` would requantize with
    MIGraphX's own calibration instead of using portarun's quantization.
    """
    new_names = _version_tuple(ort) >= (1, 23)
    options: dict[str, Any] = {"device_id": str(device_id),
                               "migraphx_fp16_enable": "1" if precision is Precision.FP16 else "0",
                               "migraphx_int8_enable": "0"}
    if new_names:
        options["migraphx_bf16_enable"] = "1" if precision is Precision.BF16 else "0"
    elif precision is Precision.BF16:
        raise UnsupportedError(f"onnxruntime {ort}: the MIGraphX EP has bf16 only from ONNX Runtime 1.23",
                               backend="onnxruntime", hint="upgrade onnxruntime-migraphx, or use fp16")
    if cache_dir is not None and new_names:
        # 1.23+ names each cached program by GPU target, model and I/O shapes inside this folder.
        # 1.19-1.22 could only save/load one program at a fixed path, which would hand one
        # model's compiled program to the next model: no cache there, MIGraphX compiles each session.
        options["migraphx_model_cache_dir"] = _cache_subdir(cache_dir, "migraphx")
    return options


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
            engines = ort_trt_ep_cache_dir(cache_dir, ort_version(), tensorrt_library_version())
            engines.mkdir(parents=True, exist_ok=True)
            options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines),
                            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(engines)})
    elif ep == "MIGraphXExecutionProvider":
        options = migraphx_options(precision, device_id, cache_dir, ort_version())
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

