"""Random feeds that respect the graph: bounds traced to the tables inputs index, masks, dims."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import InputError
from portarun.feeds import MAX_FEED_BYTES, feed_plan, random_feeds, validate_dims
from portarun.types import TensorSpec


def _roles_model() -> portarun.Model:
    """Each input reaches its bound a different way (through Cast/Unsqueeze, a OneHot, an offset ...)."""
    inits = [numpy_helper.from_array(np.ones((100, 4), np.float32), "word"),
             numpy_helper.from_array(np.ones((2, 4), np.float32), "types"),
             numpy_helper.from_array(np.ones((8, 4), np.float32), "positions"),
             numpy_helper.from_array(np.array(7, np.int64), "depth"),
             numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "onehot_values"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array(2, np.int64), "two"),
             numpy_helper.from_array(np.array(255.0, np.float32), "pixel_scale"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [
        helper.make_node("Gather", ["word", "ids"], ["e_word"]),
        helper.make_node("Cast", ["kinds"], ["kinds32"], to=TensorProto.INT32),
        helper.make_node("Unsqueeze", ["kinds32", "axis0"], ["kinds_u"]),
        helper.make_node("Squeeze", ["kinds_u", "axis0"], ["kinds_s"]),
        helper.make_node("Gather", ["types", "kinds_s"], ["e_type"]),
        helper.make_node("Add", ["pos", "two"], ["pos2"]),  # OPT-style offset: valid ids are 0..5
        helper.make_node("Gather", ["positions", "pos2"], ["e_pos"]),
        helper.make_node("OneHot", ["label", "depth", "onehot_values"], ["hot"], axis=-1),
        helper.make_node("Where", ["keep", "x", "zero"], ["masked"]),
        helper.make_node("Div", ["pixels", "pixel_scale"], ["scaled"]),
        helper.make_node("Cast", ["free"], ["free_f"], to=TensorProto.FLOAT),
    ]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("kinds", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("pos", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("keep", TensorProto.BOOL, ["batch", "seq"]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"]),
              helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, None, None]),
              helper.make_tensor_value_info("free", TensorProto.INT64, ["batch"])]
    shapes = {"e_word": ["batch", "seq", 4], "e_type": ["batch", "seq", 4], "e_pos": ["batch", "seq", 4],
              "hot": ["batch", 7], "masked": ["batch", "seq"], "scaled": ["batch", 3, None, None], "free_f": ["batch"]}
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in shapes.items()]
    graph = helper.make_graph(nodes, "roles", inputs, outputs, inits)
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_integer_inputs_stay_inside_what_they_index():
    model = _roles_model()
    plan = feed_plan(model, {"batch": 64, "seq": 4})
    feeds = plan.generate(seed=3)
    assert feeds["ids"].max() < 100 and feeds["ids"].max() > 10  # the vocabulary, not [0, 10)
    assert set(np.unique(feeds["kinds"])) == {0, 1}  # 2 rows, found through Cast/Unsqueeze/Squeeze
    assert feeds["label"].max() < 7 and feeds["label"].min() >= 0  # the OneHot depth
    assert feeds["keep"].dtype == bool and feeds["keep"].any(axis=-1).all()  # only feeds Where: a mask
    assert feeds["pos"].max() <= 5  # 8 positions minus the offset of 2
    assert feeds["pixels"].shape == (64, 3, 64, 64) and feeds["pixels"].max() > 1.5  # scaled by 1/255 first
    assert feeds["x"].dtype == np.float32 and abs(feeds["x"].mean()) < 0.3
    with portarun.compile(model, "onnxruntime:cpu") as exe:
        outputs = exe.run(feeds)
    np.testing.assert_array_equal(outputs["hot"].sum(axis=-1), 1)  # every label inside the depth


def test_a_guess_is_said_with_the_input_and_how_to_pass_real_data():
    lines = feed_plan(_roles_model()).describe()
    warning = [line for line in lines if line.startswith("warning")]
    assert len(warning) == 1 and "'free'" in warning[0] and "--input free=FILE.npy" in warning[0]
    assert any(line.startswith("dims:") and "seq=16 (default" in line for line in lines)


def test_position_tables_cap_the_sequence_and_totals_follow_the_cache():
    decoder = portarun.models.build("decoder-tiny")
    plan = feed_plan(decoder, {"seq": 5, "past_seq": 3})
    feeds = plan.generate(0)
    assert plan.dims["total_seq"].size == 8 and feeds["attention_mask"].shape == (1, 8)
    np.testing.assert_array_equal(feeds["position_ids"], [[3, 4, 5, 6, 7]])  # counting on from the past
    spec_only = random_feeds(decoder.inputs, dims={"seq": 4})  # without the graph, names still decide
    assert set(np.unique(spec_only["attention_mask"])) <= {0, 1} and spec_only["attention_mask"][:, 0].all()


def test_dims_are_validated_against_the_model():
    model = _roles_model()
    with pytest.raises(InputError, match=r"no symbolic dim 'sequence'.*batch, seq, pixels:2, pixels:3"):
        validate_dims(model.inputs, {"sequence": 4})
    with pytest.raises(InputError, match="must be positive, got -3"):
        feed_plan(model, {"seq": -3}, strict=True)
    with pytest.raises(InputError, match="must be positive, got 0"):
        validate_dims(model.inputs, {"batch": 0})
    assert validate_dims(portarun.models.build("decoder-tiny").inputs, {"past_seq": 0}) == {"past_seq": 0}
    with pytest.raises(InputError, match="whole number"):
        validate_dims(model.inputs, {"batch": "two"})


@pytest.mark.parametrize("size", [10**12, 2**63 - 1, 2**70])
def test_absurd_sizes_are_refused_with_the_size_not_a_memory_error(size):
    spec = TensorSpec("x", np.float32, ("batch", 8))
    with pytest.raises(InputError, match=r"would take [\d,]+ bytes, over the") as info:
        random_feeds([spec], dims={"batch": size})
    assert f"{MAX_FEED_BYTES:,}" in str(info.value)


@pytest.mark.parametrize("shape", [(-5, 3), (2, -7)])
def test_a_declared_negative_dim_is_an_input_error(shape):
    with pytest.raises(InputError, match="declares dim"):
        random_feeds([TensorSpec("x", np.float32, shape)])
    with pytest.raises(InputError, match="must be positive"):
        random_feeds([TensorSpec("x", np.float32, ("n",))], dims={"n": -5})


def test_minilm_random_feeds_pass_on_every_cpu_backend(minilm_model):
    from portarun_conformance import tolerance_for

    feeds = random_feeds(minilm_model, seed=1, dims={"batch": 2, "sequence": 12})
    assert set(np.unique(feeds["token_type_ids"])) <= {0, 1} and feeds["input_ids"].max() < 30522
    with portarun.compile(minilm_model, "onnxruntime:cpu") as exe:
        expected = exe.run(feeds)
    for target in ("openvino:cpu", "xla:cpu"):
        backend = target.split(":")[0]
        if backend not in {b.name for b in portarun.list_backends() if b.available}:
            continue
        with portarun.compile(minilm_model, target) as exe:
            result = portarun.compare(exe.run(feeds), expected, tolerance_for(portarun.Precision.FP32, backend=backend))
        assert result, f"{target}: {result.summary()}"
