"""Running a serialized engine through TensorRT's tensor API, with numpy in and out.

Per run: check the shapes against the optimization profile (``InputError`` before
TensorRT sees them), ``set_input_shape`` for every input, copy inputs into device
buffers (grown, never shrunk, and reused across runs), ``set_tensor_address`` for
every I/O tensor, ``execute_async_v3`` on our stream, copy outputs back, synchronize.
Outputs whose shape depends on the data (NonZero, ...) get an ``IOutputAllocator``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import CompileError, Executable, RunError

from .cache import EngineKey
from .cuda import DeviceBuffer
from .profiles import Profile, check_in_profile, profile_to_dict

BACKEND = "tensorrt"
ENGINE_FILE = "engine.plan"
TIMING_FILE = "timing.cache"


def numpy_dtype(trt: Any, trt_dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT DataType (bf16 through ml_dtypes)."""
    if trt_dtype == getattr(trt.DataType, "BF16", object()):
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(trt.nptype(trt_dtype))


def _make_output_allocator(trt: Any, cuda: Any) -> Any:
    class OutputAllocator(trt.IOutputAllocator):
        """Device memory for outputs whose size TensorRT learns only while running."""

        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def _grow(self, name: str, size: int) -> int:
            current = self.buffers.get(name)
            if current is None or current.nbytes < size:
                if current is not None:
                    cuda.free(current)
                self.buffers[name] = cuda.alloc(size)
            return self.buffers[name].ptr

        def reallocate_output(self, tensor_name: str, memory: Any, size: int, alignment: int) -> int:
            return self._grow(tensor_name, int(size))

        def reallocate_output_async(self, tensor_name: str, memory: Any, size: int, alignment: int,
                                    stream: Any) -> int:
            return self._grow(tensor_name, int(size))

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return OutputAllocator()


class EngineRunner:
    """One deserialized engine, an execution context, a stream and reusable device buffers."""

    def __init__(self, trt: Any, cuda: Any, engine_bytes: bytes, logger: Any, device_index: int):
        self.trt = trt
        self.cuda = cuda
        self.logger = logger
        self.device_index = device_index
        cuda.set_device(device_index)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise CompileError(f"TensorRT could not deserialize the engine: {logger.errors() or 'no reason logged'}",
                               backend=BACKEND, hint="the engine was built by another TensorRT version or for "
                                                     "another GPU; recompile it")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise CompileError(f"TensorRT could not create an execution context: {logger.errors()}", backend=BACKEND,
                               hint="the GPU may be out of memory")
        self.stream = cuda.stream()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            else:
                self.outputs.append(name)
        self.dtypes = {name: numpy_dtype(trt, self.engine.get_tensor_dtype(name)) for name in self.inputs + self.outputs}
        self.buffers: dict[str, DeviceBuffer] = {}
        self.allocator = None

    def _buffer(self, name: str, nbytes: int) -> DeviceBuffer:
        current = self.buffers.get(name)
        if current is None or current.nbytes < nbytes:
            if current is not None:
                self.cuda.free(current)
            current = self.buffers[name] = self.cuda.alloc(nbytes)
        return current

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cuda, context = self.trt, self.cuda, self.context
        cuda.set_device(self.device_index)  # another executable may have switched the current GPU
        for name in self.inputs:
            array = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            if not context.set_input_shape(name, tuple(array.shape)):
                raise RunError(f"TensorRT refused shape {list(array.shape)} for input '{name}': "
                               f"{self.logger.errors()}", backend=BACKEND)
            buffer = self._buffer(name, array.nbytes)
            cuda.to_device(buffer, array, self.stream)
            context.set_tensor_address(name, buffer.ptr)
            feeds[name] = array  # keep the host copy alive until the stream is synchronized
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent: TensorRT asks for memory while it runs
                if self.allocator is None:
                    self.allocator = _make_output_allocator(trt, cuda)
                context.set_output_allocator(name, self.allocator)
                continue
            shapes[name] = shape
            nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtypes[name].itemsize
            context.set_tensor_address(name, self._buffer(name, nbytes).ptr)
        if not context.execute_async_v3(cuda.stream_handle(self.stream)):
            raise RunError(f"TensorRT failed to execute: {self.logger.errors() or 'no reason logged'}",
                           backend=BACKEND)
        results: dict[str, np.ndarray] = {}
        for name in self.outputs:
            if name in shapes:
                buffer = self.buffers[name]
                shape = shapes[name]
            else:  # shape and memory came through the output allocator
                cuda.synchronize(self.stream)
                shape = self.allocator.shapes[name]
                buffer = self.allocator.buffers[name]
            host = np.empty(shape, dtype=self.dtypes[name])
            cuda.to_host(host, buffer, self.stream)
            results[name] = host
        cuda.synchronize(self.stream)
        return results

    def close(self) -> None:
        buffers = list(self.buffers.values())
        if self.allocator is not None:
            buffers += list(self.allocator.buffers.values())
        for buffer in buffers:
            try:
                self.cuda.free(buffer)
            except Exception:
                pass
        self.buffers.clear()
        try:
            self.cuda.destroy_stream(self.stream)
        except Exception:
            pass
        self.context = None
        self.engine = None
        self.runtime = None


class TensorRtExecutable(Executable):
    def __init__(self, runner: EngineRunner, engine_bytes: bytes, timing_cache: bytes | None, key: EngineKey,
                 profile: Profile, **kwargs: Any):
        super().__init__(**kwargs)
        self.runner = runner
        self.engine_bytes = engine_bytes
        self.timing_cache = timing_cache
        self.key = key
        self.profile = profile

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_in_profile(self.profile, feeds)  # a clear InputError before TensorRT sees the shapes
        outputs = self.runner.run(dict(feeds))
        return {spec.name: outputs[spec.name] for spec in self.outputs}

    def _save_payload(self, payload_dir: Path) -> dict[str, Any]:
        (payload_dir / ENGINE_FILE).write_bytes(self.engine_bytes)
        extras: dict[str, Any] = {"engine": ENGINE_FILE, "engine_key": self.key.to_dict(),
                                  "engine_key_digest": self.key.digest, "profiles": profile_to_dict(self.profile)}
        if self.timing_cache:
            (payload_dir / TIMING_FILE).write_bytes(self.timing_cache)
            extras["timing_cache"] = TIMING_FILE
        (payload_dir / "engine_key.json").write_text(json.dumps(self.key.to_dict(), indent=2, sort_keys=True) + "\n")
        return extras

    def _close(self) -> None:
        self.runner.close()
