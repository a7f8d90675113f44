"""A stand-in for the `tensorrt` module and the CUDA helper, to drive portarun's own code paths.

Nothing here is TensorRT: the fake "engine" is the ONNX model's bytes and "executes" it
with onnx's ReferenceEvaluator, reading and writing a fake device memory through the
same addresses portarun hands to ``set_tensor_address``. It lets the tests walk the
backend's compile -> cache -> run -> save -> load paths (and their error handling) on
a machine without TensorRT; what TensorRT itself does is only checked by the
``gpu``-marked tests, on hardware.
"""

from __future__ import annotations

import enum
import sys
import types

import numpy as np
import onnx
import pytest

from portarun_backends.tensorrt.cuda import DeviceBuffer, GpuInfo

MAGIC = b"FAKE-ENGINE:"


class FakeCuda:
    name = "fake-cuda"

    def __init__(self, gpu_name: str = "Fake GPU", major: int = 9, minor: int = 0):
        self.memory: dict[int, np.ndarray] = {}
        self.next_ptr = 4096
        self.gpu_info = (gpu_name, major, minor)
        self.current_device = None

    def device_count(self):
        return 1

    def gpu(self, index):
        return GpuInfo(index, *self.gpu_info)

    def set_device(self, index):
        self.current_device = index

    def stream(self):
        return object()

    def stream_handle(self, stream):
        return id(stream)

    def synchronize(self, stream):
        pass

    def destroy_stream(self, stream):
        pass

    def alloc(self, nbytes):
        ptr = self.next_ptr
        self.next_ptr += max(int(nbytes), 1) + 256
        self.memory[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        return DeviceBuffer(ptr, int(nbytes))

    def free(self, buffer):
        self.memory.pop(buffer.ptr)

    def to_device(self, buffer, array, stream):
        self.memory[buffer.ptr][: array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)

    def to_host(self, array, buffer, stream):
        array.reshape(-1).view(np.uint8)[:] = self.memory[buffer.ptr][: array.nbytes]


def make_fake_trt(cuda: FakeCuda, version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity

    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        INT8 = 1
        TF32 = 6
        BF16 = 17

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class TensorIOMode(enum.IntEnum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.model_bytes = b""
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return types.SimpleNamespace(name=self.inputs[index], is_shape_tensor=False)

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse(self, data, path=None):
            proto = onnx.load_from_string(bytes(data))
            init = {t.name for t in proto.graph.initializer}
            self.network.inputs = [i.name for i in proto.graph.input if i.name not in init]
            self.network.model_bytes = bytes(data)
            return True

    class Config:
        def __init__(self):
            self.flags = set()
            self.profiles = []

        def set_memory_pool_limit(self, pool, size):
            self.pool = size

        def set_flag(self, flag):
            self.flags.add(flag.name)

        def clear_flag(self, flag):
            self.flags.discard(flag.name)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            self.timing = bytes(data) + b"+"
            return self.timing

        def set_timing_cache(self, cache, ignore_mismatch):
            pass

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: self.timing)

    class Builder:
        builds = 0

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *args: None)

        def build_serialized_network(self, network, config):
            Builder.builds += 1
            return MAGIC + network.model_bytes

    class ExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.shapes = {}
            self.addresses = {}
            self.allocators = {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def _evaluate(self, feeds):
            from onnx.reference import ReferenceEvaluator

            return dict(zip(self.engine.outputs, ReferenceEvaluator(self.engine.proto).run(None, feeds)))

        def get_tensor_shape(self, name):
            if name in self.engine.data_dependent:
                return (-1,) * self.engine.ranks[name]
            zeros = {n: np.zeros(self.shapes[n], self.engine.dtypes[n]) for n in self.engine.inputs}
            return self._evaluate(zeros)[name].shape

        def set_output_allocator(self, name, allocator):
            self.allocators[name] = allocator

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            feeds = {}
            for name in self.engine.inputs:
                dtype = self.engine.dtypes[name]
                count = int(np.prod(self.shapes[name]))
                raw = cuda.memory[self.addresses[name]][: count * dtype.itemsize]
                feeds[name] = raw.view(dtype).reshape(self.shapes[name])
            for name, value in self._evaluate(feeds).items():
                value = np.ascontiguousarray(value, self.engine.dtypes[name])
                if name in self.allocators:  # TensorRT asks for memory once it knows the size
                    self.addresses[name] = self.allocators[name].reallocate_output_async(name, 0, value.nbytes,
                                                                                         256, stream)
                    self.allocators[name].notify_shape(name, value.shape)
                cuda.memory[self.addresses[name]][: value.nbytes] = value.reshape(-1).view(np.uint8)
            return True

    class Engine:
        def __init__(self, data):
            self.proto = onnx.load_from_string(data[len(MAGIC):])
            init = {t.name for t in self.proto.graph.initializer}
            self.inputs = [i.name for i in self.proto.graph.input if i.name not in init]
            self.outputs = [o.name for o in self.proto.graph.output]
            self.dtypes = {vi.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
                           for vi in list(self.proto.graph.input) + list(self.proto.graph.output)}
            self.num_io_tensors = len(self.inputs) + len(self.outputs)
            self.ranks = {o.name: len(o.type.tensor_type.shape.dim) for o in self.proto.graph.output}
            self.data_dependent = {o for node in self.proto.graph.node if node.op_type == "NonZero"
                                   for o in node.output if o in self.outputs}

        def get_tensor_name(self, index):
            return (self.inputs + self.outputs)[index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return self.dtypes[name]

        def create_execution_context(self):
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            if not bytes(data).startswith(MAGIC):
                self.logger.log(Severity.ERROR, "fake: not an engine")
                return None
            return Engine(bytes(data))

    trt.ILogger = ILogger
    trt.BuilderFlag = BuilderFlag
    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.TensorIOMode = TensorIOMode
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DataType = types.SimpleNamespace()
    trt.nptype = lambda dtype: dtype
    trt.Builder = Builder
    trt.OnnxParser = OnnxParser
    trt.Runtime = Runtime
    trt.IOutputAllocator = object
    return trt


@pytest.fixture
def fake_stack(monkeypatch):
    """Installs the fake `tensorrt` module and CUDA helper; yields (trt module, cuda helper)."""
    from portarun.registry import default_registry
    from portarun_backends.tensorrt import backend as trt_backend

    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_backend, "load_cuda", lambda: cuda)
    default_registry.refresh()
    yield trt, cuda
    default_registry.refresh()
