"""Classic ML (ai.onnx.ml) on xla:cpu against onnxruntime, on real converter output.

skl2onnx for scikit-learn models and pipelines, onnxmltools for LightGBM and XGBoost,
trained on small seeded data sets; ZipMap outputs are compared as ORT returns them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("onnxruntime")
sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn import ensemble, impute, linear_model, pipeline, preprocessing, svm, tree  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402

from ._ort_parity import assert_matches_ort  # noqa: E402

ROWS = 40


@pytest.fixture(scope="module")
def data():
    x3, y3 = make_classification(160, 6, n_informative=4, n_classes=3, random_state=0)
    x2, y2 = make_classification(160, 6, random_state=1)
    xr, yr = make_regression(160, 6, random_state=0)
    return {"multi": (x3.astype(np.float32), y3), "binary": (x2.astype(np.float32), y2),
            "strings": (x3.astype(np.float32), np.array(["cat", "dog", "eel"])[y3]),
            "regression": (xr.astype(np.float32), yr)}


def _convert(model, x, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skl2onnx.to_onnx(model, x[:1], options={id(model): options} if options else None)


CLASSIFIERS = {
    "decision_tree": lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestClassifier(8, max_depth=5, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0),
    "logistic_regression": lambda: linear_model.LogisticRegression(max_iter=500),
    "linear_svc": lambda: svm.LinearSVC(random_state=0),
    "svc_rbf": lambda: svm.SVC(random_state=0),
    "svc_probability": lambda: svm.SVC(probability=True, random_state=0),
}


# every converter path (binary special cases, string labels, ZipMap) at least once; SVC with
# probabilities iterates pairwise coupling and is the slowest to compile, so it runs once
CLASSIFIER_CASES = [(kind, labels) for kind in ("decision_tree", "random_forest", "gradient_boosting",
                                                "logistic_regression") for labels in ("multi", "binary", "strings")]
CLASSIFIER_CASES += [("linear_svc", "multi"), ("linear_svc", "strings"), ("svc_rbf", "multi"), ("svc_rbf", "binary"),
                     ("svc_probability", "multi")]


@pytest.mark.parametrize("kind,labels", CLASSIFIER_CASES)
def test_sklearn_classifier_matches_onnxruntime(data, kind, labels):
    x, y = data[labels]
    model = CLASSIFIERS[kind]().fit(x, y)
    assert_matches_ort(_convert(model, x), {"X": x[:ROWS]}, name=f"{kind}-{labels}")


def test_zipmap_off_gives_the_probability_matrix(data):
    x, y = data["strings"]
    model = ensemble.RandomForestClassifier(5, max_depth=4, random_state=0).fit(x, y)
    onx = _convert(model, x, zipmap=False)
    assert "ZipMap" not in {n.op_type for n in onx.graph.node}
    assert_matches_ort(onx, {"X": x[:ROWS]})


REGRESSORS = {
    "decision_tree": lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestRegressor(8, max_depth=5, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingRegressor(n_estimators=8, random_state=0),
    "linear": lambda: linear_model.LinearRegression(),
    "svr": lambda: svm.SVR(),
}


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_sklearn_regressor_matches_onnxruntime(data, kind):
    x, y = data["regression"]
    model = REGRESSORS[kind]().fit(x, y)
    assert_matches_ort(_convert(model, x), {"X": x[:ROWS]}, name=kind)


def test_preprocessing_pipeline_with_missing_values(data):
    x, y = data["multi"]
    x = x.copy()
    x[::7, 2] = np.nan
    model = pipeline.make_pipeline(impute.SimpleImputer(), preprocessing.StandardScaler(),
                                   preprocessing.Normalizer(), linear_model.LogisticRegression(max_iter=500)).fit(x, y)
    assert_matches_ort(_convert(model, x), {"X": x[:ROWS]})


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_normalizer(data, norm):
    x, _ = data["multi"]
    assert_matches_ort(_convert(preprocessing.Normalizer(norm=norm).fit(x), x), {"X": x[:ROWS]})


def test_binarizer_minmax_pipeline(data):
    x, y = data["regression"]
    model = pipeline.make_pipeline(preprocessing.Binarizer(threshold=0.1), preprocessing.MinMaxScaler(),
                                   linear_model.LinearRegression()).fit(x, y)
    assert_matches_ort(_convert(model, x), {"X": x[:ROWS]})


def _categories():
    codes = np.random.default_rng(0).integers(0, 4, size=(60, 3))
    return codes.astype(np.int64), np.array(list("abcd"), dtype=object)[codes]


def test_one_hot_encoder_on_ints():
    ints, _ = _categories()
    model = preprocessing.OneHotEncoder(handle_unknown="ignore").fit(ints)
    assert_matches_ort(_convert(model, ints), {"X": ints[:ROWS]})


def test_string_inputs_one_hot_and_ordinal_including_an_unknown_string():
    _, strings = _categories()
    unseen = strings[:ROWS].copy()
    unseen[0, 0] = "never-seen"
    one_hot = preprocessing.OneHotEncoder(handle_unknown="ignore").fit(strings)
    assert_matches_ort(_convert(one_hot, strings), {"X": unseen})
    ordinal = preprocessing.OrdinalEncoder().fit(strings)
    assert_matches_ort(_convert(ordinal, strings), {"X": strings[:ROWS]})


# -- onnxmltools: LightGBM and XGBoost ------------------------------------------------------

def _boosters():
    lightgbm = pytest.importorskip("lightgbm")
    xgboost = pytest.importorskip("xgboost")
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("X", FloatTensorType([None, 6]))]
    return {
        "lightgbm": lambda m: onnxmltools.convert_lightgbm(m, initial_types=types, zipmap=False),
        "xgboost": lambda m: onnxmltools.convert_xgboost(m, initial_types=types),
    }, lightgbm, xgboost


@pytest.mark.parametrize("labels", ["multi", "binary-missing", "regression"])
@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_boosted_trees_match_onnxruntime(data, library, labels):
    converters, lightgbm, xgboost = _boosters()
    x, y = data["binary" if labels == "binary-missing" else labels]
    if labels == "binary-missing":  # NaN features: the trees' missing-value branches
        x = x.copy()
        x[::5, 1] = np.nan
    if labels == "regression":
        model = (lightgbm.LGBMRegressor(n_estimators=8, num_leaves=8, verbose=-1) if library == "lightgbm"
                 else xgboost.XGBRegressor(n_estimators=8, max_depth=3))
    else:
        model = (lightgbm.LGBMClassifier(n_estimators=8, num_leaves=8, verbose=-1) if library == "lightgbm"
                 else xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0))
    model.fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = converters[library](model)
    assert_matches_ort(onx, {"X": x[:ROWS]}, name=f"{library}-{labels}")


def test_column_transformer_with_numeric_and_string_inputs():
    """The common real pipeline: numeric columns imputed and scaled, string columns one-hot encoded,
    one graph input per column (strings included), string labels and a ZipMap out."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer

    rng = np.random.default_rng(0)
    rows = 120
    a, b = rng.standard_normal(rows).astype(np.float32), rng.standard_normal(rows).astype(np.float32)
    city = rng.choice(["paris", "rome", "oslo"], rows).astype(object)
    kind = rng.choice(["x", "y"], rows).astype(object)
    table = np.empty((rows, 4), dtype=object)
    table[:, 0], table[:, 1], table[:, 2], table[:, 3] = a, b, city, kind
    labels = np.where(a + (city == "rome") > 0.3, "yes", "no")
    columns = ColumnTransformer([
        ("num", pipeline.make_pipeline(impute.SimpleImputer(), preprocessing.StandardScaler()), [0, 1]),
        ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), [2, 3])])
    model = pipeline.make_pipeline(columns, ensemble.RandomForestClassifier(5, max_depth=4, random_state=0))
    model.fit(table, labels)
    types = [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1])),
             ("city", StringTensorType([None, 1])), ("kind", StringTensorType([None, 1]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = skl2onnx.to_onnx(model, initial_types=types)
    feeds = {"a": a[:ROWS, None], "b": b[:ROWS, None], "city": city[:ROWS, None].copy(), "kind": kind[:ROWS, None].copy()}
    feeds["city"][0, 0] = "berlin"  # a category the encoder never saw
    assert_matches_ort(onx, feeds)
