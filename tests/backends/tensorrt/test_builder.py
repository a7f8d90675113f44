"""The build sequence against a fake `trt` that records what portarun asks of it.

The fake replaces TensorRT's builder objects with recorders: these tests check that
portarun calls the documented TensorRT 10 API in the right order with the right values
(network flags, memory pool, precision flags, profile, timing cache) and turns parser
failures into CompileError naming the nodes. They do not show that TensorRT builds
anything; the hardware tests in test_backend.py do, where TensorRT and a GPU exist.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

import pytest

from portarun import models
from portarun.errors import CompileError, UsageError
from portarun_backends.tensorrt.builder import BuildSettings, build_engine, format_parser_errors
from portarun_backends.tensorrt.precision import plan_precision
from portarun_backends.tensorrt.profiles import derive_profile


class ParserError:
    def __init__(self, desc, node=-1, name="", op=""):
        self._desc, self._node, self._name, self._op = desc, node, name, op

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


class FakeParser:
    errors: list = []

    def __init__(self, network, logger):
        self.network = network

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]

    def parse(self, data, path=None):
        self.network.log.append(("parse", type(data).__name__))
        return not self.errors


def make_fake_trt(log, build_result=b"ENGINE"):
    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        TF32 = 6
        BF16 = 17

    class NetworkFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class Network:
        def __init__(self, flags):
            self.log = log
            log.append(("create_network", flags))
            self.num_inputs = 1

        def get_input(self, index):
            return SimpleNamespace(name="x", is_shape_tensor=False)

    class TimingCache:
        def serialize(self):
            return b"TIMING"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            log.append(("memory_pool", pool, size))

        def __setattr__(self, name, value):
            log.append(("config." + name, value))

        def set_flag(self, flag):
            log.append(("set_flag", flag.name))

        def clear_flag(self, flag):
            log.append(("clear_flag", flag.name))

        def add_optimization_profile(self, profile):
            log.append(("add_profile", dict(profile.shapes)))

        def create_timing_cache(self, data):
            log.append(("create_timing_cache", data))
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            log.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self):
            return TimingCache()

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, mid, hi):
            self.shapes[name] = (lo, mid, hi)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log.append(("build",))
            return build_result

    return SimpleNamespace(Builder=Builder, OnnxParser=FakeParser, BuilderFlag=BuilderFlag,
                           NetworkDefinitionCreationFlag=NetworkFlag,
                           MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"))


class Logger:
    def errors(self):
        return "[builder] out of memory"


@pytest.fixture(autouse=True)
def no_parser_errors():
    FakeParser.errors = []
    yield
    FakeParser.errors = []


def test_build_sequence_for_fp16_with_a_workspace_limit_and_a_timing_cache():
    log: list = []
    model = models.build("mlp")
    profile = derive_profile(model.inputs, dim_ranges={"batch": [1, 4, 16]})
    engine, timing = build_engine(make_fake_trt(log), model, plan_precision("fp16", "10.3.0"), profile,
                                  BuildSettings(workspace_mb=512, optimization_level=4), Logger(), b"OLD")
    assert (engine, timing) == (b"ENGINE", b"TIMING")
    assert log == [
        ("create_network", 0),  # weakly typed: the FP16 flag lowers precision
        ("parse", "bytes"),
        ("memory_pool", "WORKSPACE", 512 << 20),
        ("config.builder_optimization_level", 4),
        ("clear_flag", "TF32"),
        ("set_flag", "FP16"),
        ("add_profile", {"x": ((1, 64), (4, 64), (16, 64))}),
        ("create_timing_cache", b"OLD"),
        ("set_timing_cache", False),
        ("build",),
    ]


def test_quantized_build_creates_a_strongly_typed_network_and_sets_no_precision_flag():
    log: list = []
    model = models.build("mlp")
    build_engine(make_fake_trt(log), model, plan_precision("int8", "10.3.0"), derive_profile(model.inputs),
                 BuildSettings(), Logger())
    assert log[0] == ("create_network", 1 << 1)
    assert not [entry for entry in log if entry[0] == "set_flag"]
    assert not [entry for entry in log if entry[0] == "memory_pool"]  # TensorRT's default pool unless asked
    assert ("create_timing_cache", b"") in log


def test_parser_failures_are_compile_errors_naming_node_and_op():
    FakeParser.errors = [ParserError("unsupported attribute 'mode'", 3, "resize_1", "Resize"),
                         ParserError("INVALID_GRAPH: bad input", -1)]
    model = models.build("mlp")
    with pytest.raises(CompileError) as info:
        build_engine(make_fake_trt([]), model, plan_precision("fp32", "10.3.0"), derive_profile(model.inputs),
                     BuildSettings(), Logger())
    text = str(info.value)
    assert "node 'resize_1' (Resize): unsupported attribute 'mode'" in text
    assert "INVALID_GRAPH: bad input" in text
    assert info.value.backend == "tensorrt"


def test_a_failed_build_quotes_the_logged_error():
    model = models.build("mlp")
    with pytest.raises(CompileError, match="out of memory"):
        build_engine(make_fake_trt([], build_result=None), model, plan_precision("fp32", "10.3.0"),
                     derive_profile(model.inputs), BuildSettings(), Logger())


def test_parser_error_list_is_capped():
    parser = SimpleNamespace(num_errors=12, get_error=lambda i: ParserError(f"e{i}", i, f"n{i}", "Op"))
    text = format_parser_errors(parser, limit=3)
    assert "node 'n0' (Op): e0" in text and "n3" not in text and "and 9 more" in text


@pytest.mark.parametrize("options, words", [({"builder_optimization_level": 9}, "0-5"),
                                            ({"workspace_mb": 0}, "positive")])
def test_bad_build_settings_are_usage_errors(options, words):
    with pytest.raises(UsageError, match=words):
        BuildSettings.from_options(options)
