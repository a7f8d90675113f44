import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import InputError, UsageError
from portarun.quantize import RandomCalibration
from portarun.quantize.calibration import RangeCollector, entropy_threshold, load_samples, split_holdout


@pytest.fixture(scope="module")
def mlp():
    return portarun.models.build("mlp")


def _embedding_model(vocab=50):
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((vocab, 8)).astype(np.float32), "emb")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["h"], name="embed"),
         helper.make_node("ReduceMean", ["h"], ["y"], name="pool", axes=[1])],
        "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8])], [table])
    graph.node.append(helper.make_node("Identity", ["attention_mask"], ["unused"], name="mask_id"))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return portarun.load(proto)


def test_random_samples_are_seeded_and_token_ids_stay_in_vocabulary():
    model = _embedding_model(vocab=50)
    a = load_samples(model, RandomCalibration(4, seed=3, dims={"seq": 64}))
    b = load_samples(model, RandomCalibration(4, seed=3, dims={"seq": 64}))
    assert len(a) == 4 and a[0]["ids"].shape == (1, 64)
    assert all(np.array_equal(x["ids"], y["ids"]) for x, y in zip(a, b))
    ids = np.concatenate([s["ids"] for s in a])
    assert ids.max() < 50 and ids.max() > 10  # spans the vocabulary, not just 0..9
    assert set(np.unique(np.concatenate([s["attention_mask"] for s in a]))) <= {0, 1}


def test_npz_rows_become_samples(tmp_path, mlp):
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32))
    samples = load_samples(mlp, str(path))
    assert len(samples) == 6 and samples[0]["x"].shape == (1, 64)
    calib, valid, held_out = split_holdout(samples)
    assert held_out and len(valid) == 3 and len(calib) == 3  # half of a small set is held out


def test_iterable_and_dict_sources(mlp):
    rows = [{"x": np.ones((2, 64), np.float32)} for _ in range(3)]
    assert len(load_samples(mlp, iter(rows))) == 3
    assert len(load_samples(mlp, {"x": np.ones((5, 64), np.float32)})) == 5
    assert split_holdout(load_samples(mlp, rows[:1]))[2] is False  # one sample: nothing held out


@pytest.mark.parametrize("source, message", [
    ([], "empty"),
    ([{"x": np.ones((1, 63), np.float32)}], "dim 1 must be 64"),
    ([{"y": np.ones((1, 64), np.float32)}], "missing 'x'"),
    ([{"x": np.ones((1, 64), np.float64)}], "dtype"),
    ([np.ones((1, 64))], "must be dicts"),
    (42, "cannot use a int"),
])
def test_bad_calibration_data_is_a_clear_input_error(mlp, source, message):
    with pytest.raises(InputError, match=message):
        load_samples(mlp, source)


def test_missing_or_wrong_calibration_file(tmp_path, mlp):
    with pytest.raises(InputError, match="does not exist"):
        load_samples(mlp, str(tmp_path / "nope.npz"))
    with pytest.raises(InputError, match=".npz"):
        load_samples(mlp, str(tmp_path / "calib.npy"))
    with pytest.raises(UsageError, match="no calibration data"):
        load_samples(mlp, None)
    with pytest.raises(InputError, match="at least 1"):
        RandomCalibration(0)


def test_range_methods():
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(10_000).astype(np.float32) for _ in range(3)]
    data[1][17] = 80.0  # one outlier
    ranges = {}
    for method in ("minmax", "percentile", "entropy"):
        collector = RangeCollector(method)
        for chunk in data:
            collector.add(chunk)
        ranges[method] = collector.range()
    assert ranges["minmax"][1] == 80.0 and ranges["minmax"][0] == min(float(d.min()) for d in data)
    # percentile and entropy clip the outlier but keep the bulk of a N(0, 1)
    for method in ("percentile", "entropy"):
        lo, hi = ranges[method]
        assert 2.0 < hi < 20.0 and -20.0 < lo < -2.0, (method, lo, hi)
    with pytest.raises(UsageError, match="unknown calibration method"):
        RangeCollector("mse")


def test_entropy_threshold_of_non_negative_data():
    relu = np.maximum(np.random.default_rng(1).standard_normal(50_000), 0)
    t = entropy_threshold(relu)
    assert 1.0 < t <= relu.max()
    assert entropy_threshold(np.zeros(10)) == 0.0
