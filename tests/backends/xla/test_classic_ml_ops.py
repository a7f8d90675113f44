"""ai.onnx.ml ops the converters rarely write, on small hand-built graphs, xla:cpu against onnxruntime.

Branch modes, aggregate functions, post transforms, multi-target trees, the opset-5
TreeEnsemble, and the string/int lookups (LabelEncoder, CategoryMapper), FeatureVectorizer.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("jax")
pytest.importorskip("onnxruntime")

import portarun  # noqa: E402

from ._ort_parity import assert_matches_ort  # noqa: E402

ML = "ai.onnx.ml"


def _model(node, inputs, outputs, ml_opset=3, initializers=()):
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(ML, ml_opset)],
                             ir_version=9)


def _x(rows=32, features=3, seed=0, nan=False):
    x = np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32)
    x[::4, 0] = np.round(x[::4, 0])  # exact ties for EQ / NEQ / LEQ boundaries
    if nan:
        x[::5, 1] = np.nan
    return x


def _two_trees(mode: str, targets: int = 1, missing: bool = False):
    """Two depth-2 trees over features 0 and 1; leaf weights per target."""
    nodes = dict(
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 1, 0, 0],
        nodes_values=[0.0, 0.5, 0.0, 0.0, 0.0, -0.25, 0.0, 0.0],
        nodes_modes=[mode, mode, "LEAF", "LEAF", "LEAF", mode, "LEAF", "LEAF"],
        nodes_truenodeids=[1, 2, 0, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[4, 3, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[1 if missing else 0] * 8,
    )
    leaves = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    tree_ids, node_ids, ids, weights = [], [], [], []
    for k, (tree, node) in enumerate(leaves):
        for target in range(targets):
            tree_ids.append(tree)
            node_ids.append(node)
            ids.append(target)
            weights.append(float((k + 1) * (target + 1)) * (-1) ** k)
    return nodes, tree_ids, node_ids, ids, weights


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"])
def test_tree_regressor_branch_modes_and_missing_values(mode):
    nodes, tree_ids, node_ids, ids, weights = _two_trees(mode, missing=mode == "BRANCH_LEQ")
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain=ML, n_targets=1, target_treeids=tree_ids,
                            target_nodeids=node_ids, target_ids=ids, target_weights=weights, **nodes)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    assert_matches_ort(model, {"X": _x(nan=True)})


@pytest.mark.parametrize("aggregate,transform", [("SUM", "SOFTMAX"), ("AVERAGE", "LOGISTIC"), ("MIN", "SOFTMAX_ZERO"),
                                                 ("MAX", "NONE"), ("SUM", "PROBIT")])
def test_tree_regressor_aggregates_post_transforms_and_base_values(aggregate, transform):
    targets = 1 if transform == "PROBIT" else 3
    nodes, tree_ids, node_ids, ids, weights = _two_trees("BRANCH_LEQ", targets)
    if transform == "PROBIT":  # probit needs scores in (0, 1)
        weights = [0.1 + 0.05 * k for k in range(len(weights))]
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain=ML, n_targets=targets,
                            target_treeids=tree_ids, target_nodeids=node_ids, target_ids=ids, target_weights=weights,
                            aggregate_function=aggregate, post_transform=transform,
                            base_values=[0.25 * (t + 1) for t in range(targets)] if transform != "PROBIT" else [0.1],
                            **nodes)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, targets])])
    assert_matches_ort(model, {"X": _x()})


@pytest.mark.parametrize("transform", ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"])
def test_tree_classifier_three_classes_with_string_labels(transform):
    nodes, tree_ids, node_ids, ids, weights = _two_trees("BRANCH_LT", 3)
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "scores"], domain=ML,
                            class_treeids=tree_ids, class_nodeids=node_ids, class_ids=ids, class_weights=weights,
                            classlabels_strings=["lo", "mid", "hi"], post_transform=transform,
                            base_values=[0.1, -0.2, 0.3], **nodes)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])])
    assert_matches_ort(model, {"X": _x()})


def _tree_ensemble_v5(aggregate: int, transform: int):
    # tree 0: x0 in {0, 1} ? (x1 <= 0.5 ? leaf0 : leaf1) : leaf2 ; tree 1: x2 > 0 ? leaf3 : leaf4
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain=ML, n_targets=2, aggregate_function=aggregate, post_transform=transform,
        tree_roots=[0, 2],
        nodes_modes=helper.make_tensor("m", TensorProto.UINT8, [3], [6, 0, 3]),
        nodes_featureids=[0, 1, 2],
        nodes_splits=helper.make_tensor("s", TensorProto.FLOAT, [3], [0.0, 0.5, 0.0]),
        nodes_truenodeids=[1, 0, 3], nodes_trueleafs=[0, 1, 1],
        nodes_falsenodeids=[2, 1, 4], nodes_falseleafs=[1, 1, 1],
        membership_values=helper.make_tensor("mv", TensorProto.FLOAT, [3], [0.0, 1.0, np.nan]),
        leaf_targetids=[0, 1, 0, 1, 0],
        leaf_weights=helper.make_tensor("w", TensorProto.FLOAT, [5], [0.1, 0.2, 0.3, 0.15, 0.25]))
    return _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])], ml_opset=5)


def _v5_feeds():
    x = _x()
    x[::3, 0] = 1.0
    return {"X": x}


@pytest.mark.parametrize("aggregate,transform", [(0, 0), (1, 0), (2, 3), (3, 4)])
def test_tree_ensemble_opset5_aggregates_and_membership(aggregate, transform):
    assert_matches_ort(_tree_ensemble_v5(aggregate, transform), _v5_feeds())


def test_tree_ensemble_opset5_post_transform_codes_follow_the_spec():
    """The spec numbers SOFTMAX 1 and LOGISTIC 2; onnxruntime 1.32 reads them the other way round (and the
    onnx reference evaluator ignores post_transform), so this checks the spec's meaning on our own result."""
    feeds = _v5_feeds()
    raw = portarun.compile(portarun.Model.from_proto(_tree_ensemble_v5(1, 0)), "xla:cpu").run(feeds)["Y"]
    softmax = portarun.compile(portarun.Model.from_proto(_tree_ensemble_v5(1, 1)), "xla:cpu").run(feeds)["Y"]
    logistic = portarun.compile(portarun.Model.from_proto(_tree_ensemble_v5(1, 2)), "xla:cpu").run(feeds)["Y"]
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(logistic, 1 / (1 + np.exp(-raw)), rtol=1e-6)


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_linear_classifier_and_regressor_post_transforms(transform):
    rng = np.random.default_rng(1)
    coefficients = rng.standard_normal(9).astype(np.float32).tolist()
    node = helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain=ML, coefficients=coefficients,
                            intercepts=[0.1, 0.0, -0.1], classlabels_ints=[7, 8, 9], post_transform=transform)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])], ml_opset=1)
    assert_matches_ort(model, {"X": _x()})
    node = helper.make_node("LinearRegressor", ["X"], ["Y"], domain=ML, coefficients=coefficients[:6],
                            intercepts=[0.5, -0.5], targets=2, post_transform=transform)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])], ml_opset=1)
    assert_matches_ort(model, {"X": _x()})


def test_label_encoder_int_to_string_and_string_to_string():
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML, keys_int64s=[3, 1, 2],
                            values_strings=["three", "one", "two"], default_string="none")
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.INT64, [None])],
                   [helper.make_tensor_value_info("Y", TensorProto.STRING, [None])], ml_opset=2)
    assert_matches_ort(model, {"X": np.asarray([1, 2, 3, 4, 1, -7], np.int64)})
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML, keys_strings=["a", "b"],
                            values_strings=["A", "B"], default_string="?")
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.STRING, [None])],
                   [helper.make_tensor_value_info("Y", TensorProto.STRING, [None])], ml_opset=2)
    assert_matches_ort(model, {"X": np.asarray(["a", "b", "c", "a"], dtype=object)})


def test_category_mapper_both_directions():
    attrs = dict(cats_strings=["x", "y", "z"], cats_int64s=[10, 20, 30], default_int64=-5, default_string="nope")
    node = helper.make_node("CategoryMapper", ["X"], ["Y"], domain=ML, **attrs)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.STRING, [None, 2])],
                   [helper.make_tensor_value_info("Y", TensorProto.INT64, [None, 2])], ml_opset=1)
    assert_matches_ort(model, {"X": np.asarray([["x", "q"], ["z", "y"]], dtype=object)})
    node = helper.make_node("CategoryMapper", ["X"], ["Y"], domain=ML, **attrs)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.INT64, [None])],
                   [helper.make_tensor_value_info("Y", TensorProto.STRING, [None])], ml_opset=1)
    assert_matches_ort(model, {"X": np.asarray([10, 30, 11, 20], np.int64)})


def test_feature_vectorizer_imputer_scaler_chain():
    graph = helper.make_graph(
        [helper.make_node("Imputer", ["A"], ["Ai"], domain=ML, imputed_value_int64s=[9], replaced_value_int64=-1),
         helper.make_node("Cast", ["Ai"], ["Af"], to=TensorProto.FLOAT),
         helper.make_node("FeatureVectorizer", ["Af", "B"], ["F"], domain=ML, inputdimensions=[2, 3]),
         helper.make_node("Scaler", ["F"], ["Y"], domain=ML, offset=[0.5, 0.0, -1.0, 0.25, 0.0], scale=[2.0, 1.0, 0.5, 1.0, 3.0])],
        "g", [helper.make_tensor_value_info("A", TensorProto.INT64, [None, 2]),
              helper.make_tensor_value_info("B", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(ML, 1)],
                              ir_version=9)
    feeds = {"A": np.asarray([[1, -1], [-1, 4]], np.int64), "B": _x(2, 3)}
    assert_matches_ort(model, feeds)


def test_string_input_feeding_an_op_without_string_support_is_refused_by_name():
    graph = helper.make_graph([helper.make_node("Size", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.STRING, [None])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT64, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    wrapped = portarun.Model.from_proto(model)
    support = portarun.get_backend("xla").supports(wrapped, "xla:cpu", "fp32")
    assert not support and "string input 'X' feeds Size" in support.reason
    with pytest.raises(portarun.PortarunError, match="string input 'X' feeds Size"):
        portarun.compile(wrapped, "xla:cpu")


def test_zipmap_artifact_roundtrip_decodes_after_load(tmp_path):
    """A saved executable never traced in this process still returns ORT's list of dicts."""
    node = helper.make_node("ZipMap", ["X"], ["Z"], domain=ML, classlabels_int64s=[4, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_value_info("Z", helper.make_sequence_type_proto(
                                  helper.make_map_type_proto(TensorProto.INT64,
                                                             helper.make_tensor_type_proto(TensorProto.FLOAT, []))))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(ML, 1)],
                              ir_version=9)
    feeds = {"X": np.asarray([[0.25, 0.75], [1.0, 0.0]], np.float32)}
    assert_matches_ort(model, feeds)
    exe = portarun.compile(portarun.Model.from_proto(model), "xla:cpu")
    exe.run(feeds)
    exe.save(tmp_path / "zipmap")
    loaded = portarun.load_compiled(tmp_path / "zipmap")
    assert loaded.run(feeds)["Z"] == [{2: 0.75, 4: 0.25}, {2: 0.0, 4: 1.0}]
    onnx.checker.check_model(model)
