"""A small CUDA helper: GPUs, device buffers, a stream, and copies, for TensorRT's tensor API.

Two implementations of one interface, chosen at run time:
- cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python 12.6),
  which the ``tensorrt`` extra installs;
- PyTorch, when it is installed with CUDA (many TensorRT users have it anyway).

Nothing here is imported at module import time, so the backend imports on a machine
without CUDA and reports why it cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from portarun.plugin import BackendUnavailableError, RunError

BACKEND = "tensorrt"
CUDA_HINT = ("pip install 'portarun[tensorrt]' (installs cuda-python) on a machine with an NVIDIA GPU "
             "and its driver; or install PyTorch with CUDA")


@dataclass(frozen=True)
class GpuInfo:
    """What a TensorRT engine is specific to: the GPU model and its compute capability."""

    index: int
    name: str
    major: int
    minor: int
    total_memory: int = 0

    @property
    def compute_capability(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"

    def describe(self) -> str:
        return f"{self.name} ({self.sm})"


class DeviceBuffer:
    """Device memory of ``nbytes``; ``ptr`` is what ``set_tensor_address`` takes."""

    def __init__(self, ptr: int, nbytes: int, owner: Any = None):
        self.ptr = int(ptr)
        self.nbytes = nbytes
        self._owner = owner  # keeps a torch tensor alive


class CudaPython:
    """cuda-python's runtime API: every call returns (error, *values)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart

    def _check(self, result: Any, what: str) -> Any:
        if isinstance(result, tuple):
            err, values = result[0], result[1:]
        else:
            err, values = result, ()
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err)
            message = text.decode() if isinstance(text, bytes) else str(text)
            raise RunError(f"{BACKEND}: {what} failed: {message} (CUDA error {int(err)})", backend=BACKEND)
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def device_count(self) -> int:
        return int(self._check(self.rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))

    def gpu(self, index: int) -> GpuInfo:
        prop = self._check(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return GpuInfo(index, name.rstrip("\x00").strip(), int(prop.major), int(prop.minor), int(prop.totalGlobalMem))

    def set_device(self, index: int) -> None:
        self._check(self.rt.cudaSetDevice(index), "cudaSetDevice")

    def stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy_stream(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def alloc(self, nbytes: int) -> DeviceBuffer:
        # cudaMalloc(0) may return a null pointer; TensorRT wants a valid address even for empty tensors.
        ptr = self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return DeviceBuffer(int(ptr), int(nbytes))

    def free(self, buffer: DeviceBuffer) -> None:
        self._check(self.rt.cudaFree(buffer.ptr), "cudaFree")

    def to_device(self, buffer: DeviceBuffer, array: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buffer.ptr, array.ctypes.data, array.nbytes, kind, stream),
                    "cudaMemcpyAsync host->device")

    def to_host(self, array: np.ndarray, buffer: DeviceBuffer, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, buffer.ptr, array.nbytes, kind, stream),
                    "cudaMemcpyAsync device->host")


class TorchCuda:
    """The same through PyTorch: buffers are uint8 CUDA tensors, copies go through the stream."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.device_index = 0

    def device_count(self) -> int:
        return int(self.torch.cuda.device_count()) if self.torch.cuda.is_available() else 0

    def gpu(self, index: int) -> GpuInfo:
        prop = self.torch.cuda.get_device_properties(index)
        return GpuInfo(index, prop.name, int(prop.major), int(prop.minor), int(prop.total_memory))

    def set_device(self, index: int) -> None:
        self.device_index = index
        self.torch.cuda.set_device(index)

    def stream(self) -> Any:
        return self.torch.cuda.Stream(device=self.device_index)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        pass  # torch frees it with the object

    def alloc(self, nbytes: int) -> DeviceBuffer:
        tensor = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=f"cuda:{self.device_index}")
        return DeviceBuffer(tensor.data_ptr(), int(nbytes), owner=tensor)

    def free(self, buffer: DeviceBuffer) -> None:
        buffer._owner = None

    def to_device(self, buffer: DeviceBuffer, array: np.ndarray, stream: Any) -> None:
        if array.nbytes == 0:
            return
        source = self.torch.from_numpy(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(stream):
            buffer._owner[: array.nbytes].copy_(source, non_blocking=False)

    def to_host(self, array: np.ndarray, buffer: DeviceBuffer, stream: Any) -> None:
        if array.nbytes == 0:
            return
        with self.torch.cuda.stream(stream):
            data = buffer._owner[: array.nbytes].cpu().numpy()
        array.reshape(-1).view(np.uint8)[:] = data


def load_cuda() -> CudaPython | TorchCuda:
    """The first CUDA helper that imports and sees a GPU; BackendUnavailableError says why none did."""
    reasons = []
    try:
        helper: CudaPython | TorchCuda = CudaPython()
        count = helper.device_count()
        if count > 0:
            return helper
        reasons.append("cuda-python sees no GPU")
    except ImportError as exc:
        reasons.append(f"cuda-python is not installed ({exc})")
    except RunError as exc:
        reasons.append(f"cuda-python: {exc.message}")
    try:
        helper = TorchCuda()
        if helper.device_count() > 0:
            return helper
        reasons.append(f"torch {helper.torch.__version__} sees no CUDA GPU")
    except ImportError:
        reasons.append("torch is not installed")
    raise BackendUnavailableError(f"backend '{BACKEND}' is unavailable: no NVIDIA GPU reachable ("
                                  + "; ".join(reasons) + ")", backend=BACKEND, hint=CUDA_HINT)
