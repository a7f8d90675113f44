"""Linear models and SVMs (ai.onnx.ml): LinearClassifier/Regressor, SVMClassifier/Regressor.

Scores, labels and the binary special cases follow ONNX Runtime's CPU kernels
(linearclassifier.cc, linearregressor.cc, svmclassifier.cc, svmregressor.cc): features
compute in float32, as there.
"""

from __future__ import annotations

from jax import lax

from . import op
from ._common import Unsupported, jnp, np
from .ml_common import ML, apply_post_transform, as_rows, class_labels, label_output, logistic, \
    post_transform_name, probit


def _f32_rows(x):
    return as_rows(x).astype(jnp.float32)


def _transform_columns(scores, transform: str):
    """ORT's batched_update_scores_inplace without a second class."""
    if scores.shape[1] > 1:
        return apply_post_transform(scores, transform)
    return probit(scores) if transform == "PROBIT" else scores


def _second_class(score, mode: int, transform: str):
    """ORT's add_second_class expansion of one score per row to two columns."""
    if transform == "PROBIT":
        return jnp.stack([probit(score), jnp.zeros_like(score)], axis=1)
    if mode in (0, 1):
        return jnp.stack([1 - score, score], axis=1)
    if transform == "LOGISTIC":
        return jnp.stack([logistic(-score), logistic(score)], axis=1)
    return jnp.stack([-score, score], axis=1)


@op("LinearRegressor", domain=ML)
def linear_regressor(n, x):
    rows = _f32_rows(x)
    coefficients = np.asarray(n.attr("coefficients", []), np.float32)
    targets = int(n.attr("targets", 1))
    intercepts = np.asarray(n.attr("intercepts") or [0.0] * targets, np.float32)
    scores = rows @ jnp.asarray(coefficients.reshape(targets, -1).T) + jnp.asarray(intercepts)
    return _transform_columns(scores, post_transform_name(n.attr("post_transform")))


@op("LinearClassifier", domain=ML)
def linear_classifier(n, x):
    labels, is_string = class_labels(n)
    rows = _f32_rows(x)
    intercepts = np.asarray(n.attr("intercepts") or [], np.float32)
    count = len(intercepts)
    coefficients = np.asarray(n["coefficients"], np.float32).reshape(count, -1)
    scores = rows @ jnp.asarray(coefficients.T) + jnp.asarray(intercepts)
    transform = post_transform_name(n.attr("post_transform"))
    if count == 1:
        score = scores[:, 0]
        win = score > 0
        if len(labels) == 2:
            label = label_output(win.astype(jnp.int32), labels, is_string)
            return label, _second_class(score, 1, transform)
        # ORT answers "1"/"0" (or 1/0) when the labels are not two
        literal = np.asarray(["0", "1"], dtype=object) if is_string else np.asarray([0, 1], np.int64)
        return label_output(win.astype(jnp.int32), literal, is_string), _transform_columns(scores, transform)
    best = jnp.argmax(scores, axis=1)
    return label_output(best, labels, is_string), _transform_columns(scores, transform)


# -- SVMs ----------------------------------------------------------------------------------

def _kernel(n, rows, vectors):
    """[N, V] kernel values of rows against vectors (ORT's kernel_dot)."""
    kind = n.attr("kernel_type", "LINEAR")
    params = list(n.attr("kernel_params") or []) + [0.0, 0.0, 0.0]
    gamma, coef0, degree = np.float32(params[0]), np.float32(params[1]), float(params[2])
    if kind == "RBF":
        diff = rows[:, None, :] - vectors[None, :, :]
        return jnp.exp(-gamma * jnp.sum(diff * diff, axis=-1))
    dot = rows @ vectors.T
    if kind == "POLY":
        return jnp.power(gamma * dot + coef0, degree)
    if kind == "SIGMOID":
        return jnp.tanh(gamma * dot + coef0)
    return dot


def _support_vectors(n, features: int):
    vectors = np.asarray(n.attr("support_vectors") or [], np.float32)
    return jnp.asarray(vectors.reshape(-1, features)) if vectors.size else None


@op("SVMRegressor", domain=ML)
def svm_regressor(n, x):
    rows = _f32_rows(x)
    features = rows.shape[1]
    coefficients = np.asarray(n["coefficients"], np.float32)
    rho = float((n.attr("rho") or [0.0])[0])
    if int(n.attr("n_supports", 0)) > 0:
        vectors = _support_vectors(n, features)
        score = _kernel(n, rows, vectors) @ jnp.asarray(coefficients) + np.float32(rho)
    else:  # linear mode: the coefficients are the weights
        score = rows @ jnp.asarray(coefficients.reshape(features)) + np.float32(rho)
    if int(n.attr("one_class", 0)):
        score = jnp.where(score > 0, 1.0, -1.0).astype(jnp.float32)
    score = score[:, None]
    return probit(score) if post_transform_name(n.attr("post_transform")) == "PROBIT" else score


def _pairwise_coupling(r, k: int):
    """ORT's multiclass_probability (libsvm pairwise coupling), for all rows at once.

    ``r`` is [N, k, k]; each row iterates until its own stopping test holds, as ORT's loop does.
    """
    rows = r.shape[0]
    q = jnp.zeros((rows, k, k), jnp.float32)
    for i in range(k):
        for j in range(k):
            if j != i:
                q = q.at[:, i, i].add(r[:, j, i] * r[:, j, i])
        for j in range(i):
            q = q.at[:, i, j].set(q[:, j, i])
        for j in range(i + 1, k):
            q = q.at[:, i, j].set(-r[:, j, i] * r[:, i, j])
    eps = np.float32(0.005 / k)
    p0 = jnp.full((rows, k), 1.0 / k, jnp.float32)

    def body(_, state):
        p, done = state
        qp = jnp.einsum("nij,nj->ni", q, p)
        pqp = jnp.sum(p * qp, axis=1)
        stop = done | (jnp.max(jnp.abs(qp - pqp[:, None]), axis=1) < eps)
        new_p = p
        for i in range(k):
            qii = q[:, i, i]
            diff = (-qp[:, i] + pqp) / qii
            new_p = new_p.at[:, i].add(diff)
            pqp = (pqp + diff * (diff * qii + 2 * qp[:, i])) / (1 + diff) / (1 + diff)
            qp = (qp + diff[:, None] * q[:, i, :]) / (1 + diff)[:, None]
            new_p = new_p / (1 + diff)[:, None]
        return jnp.where(stop[:, None], p, new_p), stop

    p, _ = lax.fori_loop(0, 100, body, (p0, jnp.zeros((rows,), bool)))
    return p


@op("SVMClassifier", domain=ML)
def svm_classifier(n, x):
    labels, is_string = class_labels(n)
    k = len(labels)
    rows = _f32_rows(x)
    features = rows.shape[1]
    coefficients = np.asarray(n["coefficients"], np.float32)
    rho = np.asarray(n.attr("rho") or [0.0], np.float32)
    prob_a = np.asarray(n.attr("prob_a") or [], np.float32)
    prob_b = np.asarray(n.attr("prob_b") or [], np.float32)
    per_class = [int(v) for v in (n.attr("vectors_per_class") or [])]
    transform = post_transform_name(n.attr("post_transform"))
    all_positive = bool((coefficients >= 0).all())
    if sum(per_class) == 0:  # liblinear mode: one linear score per class
        scores = rows @ jnp.asarray(coefficients.reshape(k, -1).T) + rho[0]
        best = jnp.argmax(scores, axis=1)
        weight = jnp.max(scores, axis=1)
        label = _choose_binary(best, weight, labels, is_string, False, all_positive) if k == 2 \
            else label_output(best, labels, is_string)
        return label, _transform_columns(scores, transform)
    if k < 2:
        raise Unsupported("SVMClassifier with support vectors and fewer than two classes")
    kernels = _kernel(n, rows, _support_vectors(n, features))  # [N, V]
    vector_count = sum(per_class)
    coefficients = jnp.asarray(coefficients.reshape(k - 1, vector_count))
    starts = np.cumsum([0] + per_class)
    pair_scores, votes = [], jnp.zeros((rows.shape[0], k), jnp.int32)
    index = 0
    for i in range(k - 1):
        for j in range(i + 1, k):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            total = (kernels[:, si].astype(jnp.float64) @ coefficients[j - 1, si].astype(jnp.float64)
                     + kernels[:, sj].astype(jnp.float64) @ coefficients[i, sj].astype(jnp.float64)
                     + float(rho[index]))
            pair_scores.append(total.astype(jnp.float32))
            votes = votes.at[:, i].add(total > 0).at[:, j].add(total <= 0)
            index += 1
    pairs = jnp.stack(pair_scores, axis=1)  # [N, k(k-1)/2]
    best = jnp.argmax(votes, axis=1)
    have_proba = len(prob_a) > 0
    if have_proba:
        r = jnp.zeros((rows.shape[0], k, k), jnp.float32)
        index = 0
        for i in range(k - 1):
            for j in range(i + 1, k):
                value = 1 - logistic(pairs[:, index] * prob_a[index] + prob_b[index])
                value = jnp.clip(value, 1e-7, 1 - 1e-7)
                r = r.at[:, i, j].set(value).at[:, j, i].set(1 - value)
                index += 1
        scores = _transform_columns(_pairwise_coupling(r, k), transform)
    elif k == 2:
        scores = _second_class(pairs[:, 0], 2 if transform == "NONE" else 0, transform)
    else:
        scores = _transform_columns(pairs, transform)
    if k == 2:
        label = _choose_binary(best, jnp.zeros(best.shape, jnp.float32), labels, is_string, have_proba, all_positive)
    else:
        label = label_output(best, labels, is_string)
    return label, scores


def _choose_binary(best, weight, labels, is_string: bool, have_proba: bool, all_positive: bool):
    """ORT's ChooseClass for two labels."""
    if have_proba:
        return label_output(best, labels, is_string)
    if all_positive:
        positive = weight >= 0.5
    else:
        positive = weight > 0
    return label_output(jnp.where(positive, 1, best), labels, is_string)


__all__ = ["linear_classifier", "linear_regressor", "svm_classifier", "svm_regressor"]
