"""Tree ensembles (ai.onnx.ml): TreeEnsembleClassifier/Regressor (opsets 1-3) and TreeEnsemble (opset 5).

Vectorised over rows and trees: every node of every tree is one entry of flat arrays
(feature, threshold, mode, true/false successor; a leaf is its own successor), and the
whole forest descends one level per step for all rows at once — ``depth`` gather steps
of shape [rows, trees], no Python loop over rows or trees. The reached leaves gather
a dense [nodes, targets] weight matrix, aggregated over the tree axis.

Scores, labels and the two-class special cases follow ONNX Runtime's CPU kernels
(tree_ensemble_aggregator.h), which the converters' output is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

from jax import lax

from . import op
from ._common import Unsupported, jnp, np
from .ml_common import ML, apply_post_transform, as_rows, class_labels, floats, label_output, logistic, \
    post_transform_name, probit

LEQ, LT, GTE, GT, EQ, NEQ, MEMBER, LEAF = range(8)
_MODE_NAMES = {"BRANCH_LEQ": LEQ, "BRANCH_LT": LT, "BRANCH_GTE": GTE, "BRANCH_GT": GT, "BRANCH_EQ": EQ,
               "BRANCH_NEQ": NEQ, "BRANCH_MEMBER": MEMBER, "LEAF": LEAF}
AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")  # TreeEnsemble (opset 5) writes them as ints


@dataclass
class Forest:
    """One ensemble as flat arrays (index = node; leaves point to themselves)."""

    roots: np.ndarray  # [T] int32
    feature: np.ndarray  # [G] int32
    threshold: np.ndarray  # [G] float
    mode: np.ndarray  # [G] int8
    true_next: np.ndarray  # [G] int32
    false_next: np.ndarray  # [G] int32
    missing_true: np.ndarray  # [G] bool
    weights: np.ndarray  # [G, K] summed leaf weights
    present: np.ndarray  # [G, K] bool: the leaf carries a weight for that target/class
    depth: int
    members: np.ndarray | None = None  # [G, S] set members (NaN padded) for MEMBER nodes


_PREPARED: dict[int, tuple] = {}


def _prepared(n, build):
    # building the arrays is pure Python over every node: once per graph node, not per trace
    key = id(n.node)
    hit = _PREPARED.get(key)
    if hit is None or hit[0] is not n.node:
        if len(_PREPARED) > 256:  # bounded: a long-lived process compiles many models
            _PREPARED.clear()
        hit = (n.node, build(n))
        _PREPARED[key] = hit
    return hit[1]


def _depth(roots: np.ndarray, true_next: np.ndarray, false_next: np.ndarray, is_leaf: np.ndarray) -> int:
    depth, frontier, seen = 0, set(int(r) for r in roots), set()
    while frontier:
        inner = {g for g in frontier if not is_leaf[g]}
        if not inner:
            break
        if inner & seen:
            raise Unsupported("tree ensemble has a cycle")
        seen |= inner
        frontier = {int(true_next[g]) for g in inner} | {int(false_next[g]) for g in inner}
        depth += 1
    return depth


def legacy_forest(n, prefix: str, n_outputs: int) -> Forest:
    """TreeEnsembleClassifier/Regressor attributes (``prefix`` 'class' or 'target') as a Forest."""
    tree_ids = np.asarray(n.attr("nodes_treeids", []), np.int64)
    node_ids = np.asarray(n.attr("nodes_nodeids", []), np.int64)
    count = len(tree_ids)
    position = {(int(t), int(i)): g for g, (t, i) in enumerate(zip(tree_ids, node_ids))}
    modes = np.asarray([_MODE_NAMES.get(m, -1) for m in n.attr("nodes_modes", [])], np.int8)
    if (modes < 0).any():
        raise Unsupported(f"unknown node mode in {sorted(set(n.attr('nodes_modes')))}")
    is_leaf = modes == LEAF
    trues = np.asarray(n.attr("nodes_truenodeids", [0] * count), np.int64)
    falses = np.asarray(n.attr("nodes_falsenodeids", [0] * count), np.int64)
    true_next = np.arange(count, dtype=np.int32)
    false_next = np.arange(count, dtype=np.int32)
    children = set()
    for g in np.nonzero(~is_leaf)[0]:
        tree = int(tree_ids[g])
        true_next[g] = position[(tree, int(trues[g]))]
        false_next[g] = position[(tree, int(falses[g]))]
        children.update((int(true_next[g]), int(false_next[g])))
    roots, seen_trees = [], set()
    for g, tree in enumerate(tree_ids):
        if int(tree) not in seen_trees and g not in children:
            seen_trees.add(int(tree))
            roots.append(g)
    thresholds = floats(n, "nodes_values", [0.0] * count)
    missing = np.asarray(n.attr("nodes_missing_value_tracks_true") or [0] * count, np.int64) != 0
    weights_attr = floats(n, f"{prefix}_weights", [])
    weights = np.zeros((count, n_outputs), np.float64 if weights_attr.dtype == np.float64 else np.float32)
    present = np.zeros((count, n_outputs), bool)
    for tree, node, target, weight in zip(n.attr(f"{prefix}_treeids", []), n.attr(f"{prefix}_nodeids", []),
                                          n.attr(f"{prefix}_ids", []), weights_attr):
        g = position[(int(tree), int(node))]
        weights[g, int(target)] += weight
        present[g, int(target)] = True
    features = np.where(is_leaf, 0, np.asarray(n.attr("nodes_featureids", [0] * count), np.int64)).astype(np.int32)
    roots = np.asarray(roots, np.int32)
    return Forest(roots, features, thresholds, modes, true_next, false_next, missing, weights, present,
                  _depth(roots, true_next, false_next, is_leaf))


def v5_forest(n) -> Forest:
    """TreeEnsemble (ai.onnx.ml opset 5): interior nodes 0..I-1, then the leaves I..I+L-1."""
    splits = np.asarray(n["nodes_splits"])
    inner = len(splits)
    leaf_targets = np.asarray(n["leaf_targetids"], np.int64)
    leaf_weights = np.asarray(n["leaf_weights"])
    leaves = len(leaf_targets)
    count = inner + leaves
    n_targets = int(n["n_targets"])

    def successor(ids, is_leaf):
        ids = np.asarray(ids, np.int64)
        return np.where(np.asarray(is_leaf, np.int64) != 0, inner + ids, ids).astype(np.int32)

    true_next = np.arange(count, dtype=np.int32)
    false_next = np.arange(count, dtype=np.int32)
    true_next[:inner] = successor(n["nodes_truenodeids"], n["nodes_trueleafs"])
    false_next[:inner] = successor(n["nodes_falsenodeids"], n["nodes_falseleafs"])
    modes = np.full(count, LEAF, np.int8)
    node_modes = n.attr("nodes_modes")
    modes[:inner] = np.asarray(node_modes if node_modes is not None else np.zeros(inner), np.int8)
    thresholds = np.zeros(count, splits.dtype)
    thresholds[:inner] = splits
    features = np.zeros(count, np.int32)
    features[:inner] = np.asarray(n["nodes_featureids"], np.int32)
    missing = np.zeros(count, bool)
    tracks = n.attr("nodes_missing_value_tracks_true")
    if tracks is not None:
        missing[:inner] = np.asarray(tracks).reshape(-1) != 0
    weights = np.zeros((count, n_targets), leaf_weights.dtype)
    present = np.zeros((count, n_targets), bool)
    for leaf, (target, weight) in enumerate(zip(leaf_targets, leaf_weights)):
        weights[inner + leaf, int(target)] += weight
        present[inner + leaf, int(target)] = True
    members = None
    if (modes == MEMBER).any():
        values = np.asarray(n["membership_values"], np.float64)
        sets, current = [], []
        for v in values:  # the sets of the MEMBER nodes, in node order, separated by NaN
            if np.isnan(v):
                sets.append(current)
                current = []
            else:
                current.append(v)
        if current:
            sets.append(current)
        width = max(1, max((len(s) for s in sets), default=1))
        members = np.full((count, width), np.nan, splits.dtype)
        for g, member_set in zip(np.nonzero(modes == MEMBER)[0], sets):
            members[g, :len(member_set)] = member_set
    roots = np.asarray(n["tree_roots"], np.int32)
    return Forest(roots, features, thresholds, modes, true_next, false_next, missing, weights, present,
                  _depth(roots, true_next, false_next, modes == LEAF), members)


def _compare(mode: int, v, t):
    if mode == LEQ:
        return v <= t
    if mode == LT:
        return v < t
    if mode == GTE:
        return v >= t
    if mode == GT:
        return v > t
    if mode == EQ:
        return v == t
    return v != t


def leaves(forest: Forest, x):
    """The leaf each row reaches in each tree: [N, T] node indices."""
    compute = jnp.promote_types(x.dtype, forest.threshold.dtype)
    x = x.astype(compute)
    threshold = jnp.asarray(forest.threshold.astype(compute))
    feature, mode = jnp.asarray(forest.feature), jnp.asarray(forest.mode)
    true_next, false_next = jnp.asarray(forest.true_next), jnp.asarray(forest.false_next)
    missing = jnp.asarray(forest.missing_true)
    members = None if forest.members is None else jnp.asarray(forest.members.astype(compute))
    used = sorted({int(m) for m in np.unique(forest.mode) if m != LEAF})
    track_missing = bool(forest.missing_true.any())
    rows = x.shape[0]

    def step(_, idx):
        v = jnp.take_along_axis(x, feature[idx], axis=1)
        t = threshold[idx]
        if len(used) == 1 and used[0] != MEMBER:
            cond = _compare(used[0], v, t)
        else:
            m = mode[idx]
            cond = jnp.zeros(idx.shape, bool)
            for code in used:
                hit = jnp.any(v[..., None] == members[idx], axis=-1) if code == MEMBER else _compare(code, v, t)
                cond = jnp.where(m == code, hit, cond)
        if track_missing:
            cond = cond | (missing[idx] & jnp.isnan(v))
        return jnp.where(cond, true_next[idx], false_next[idx])

    start = jnp.broadcast_to(jnp.asarray(forest.roots)[None, :], (rows, len(forest.roots)))
    if forest.depth == 0:
        return start
    return lax.fori_loop(0, forest.depth, step, start)


def aggregate(forest: Forest, idx, how: str):
    """Per-row (scores [N, K], has_score [N, K]) from the reached leaves."""
    weights = jnp.asarray(forest.weights)[idx]  # [N, T, K]
    present = jnp.asarray(forest.present)[idx]
    has = jnp.any(present, axis=1)
    if how == "MIN":
        score = jnp.min(jnp.where(present, weights, jnp.inf), axis=1)
    elif how == "MAX":
        score = jnp.max(jnp.where(present, weights, -jnp.inf), axis=1)
    else:
        score = jnp.sum(weights, axis=1)
        if how == "AVERAGE":
            score = score / len(forest.roots)
    return jnp.where(has, score, 0), has


def regression_scores(score, has, base: np.ndarray, how: str, transform: str, single_as_ort: bool = True):
    """ORT's TreeAggregator{Sum,Average,Min,Max}.FinalizeScores(1).

    With one target ORT applies only PROBIT (onnxruntime issue 26596); ``single_as_ort=False``
    applies every transform, as the spec says (used for the opset-5 TreeEnsemble).
    """
    k = score.shape[1]
    if k == 1 and not single_as_ort:
        origin = float(base[0]) if len(base) == 1 else 0.0
        return apply_post_transform(score + origin, transform)
    if k == 1:
        origin = float(base[0]) if len(base) == 1 else 0.0
        out = score + origin
        return probit(out) if transform == "PROBIT" else out
    if len(base) == k:
        out = score + jnp.asarray(base, score.dtype)[None, :]
    else:
        out = score
    return apply_post_transform(out, transform)


def _aggregate_name(n) -> str:
    value = n.attr("aggregate_function", "SUM")
    return AGGREGATES[int(value)] if isinstance(value, (int, np.integer)) else str(value)


@op("TreeEnsembleRegressor", domain=ML)
def tree_ensemble_regressor(n, x):
    n_targets = int(n.attr("n_targets", 1))
    forest = _prepared(n, lambda n: legacy_forest(n, "target", n_targets))
    rows = as_rows(x)
    how = _aggregate_name(n)
    score, has = aggregate(forest, leaves(forest, rows), how)
    base = floats(n, "base_values", [])
    out = regression_scores(score, has, base, how, post_transform_name(n.attr("post_transform")))
    return out.astype(jnp.float32)


@op("TreeEnsemble", domain=ML, since=5)
def tree_ensemble(n, x):
    forest = _prepared(n, v5_forest)
    rows = as_rows(x)
    how = _aggregate_name(n) if n.attr("aggregate_function") is not None else "SUM"
    score, has = aggregate(forest, leaves(forest, rows), how)
    # the spec numbers post_transform NONE 0, SOFTMAX 1, LOGISTIC 2, SOFTMAX_ZERO 3, PROBIT 4
    # (onnxruntime 1.32 swaps 1 and 2; the spec is what a file means)
    out = regression_scores(score, has, np.zeros(0), how, post_transform_name(n.attr("post_transform", 0)),
                            single_as_ort=False)
    return out.astype(x.dtype)


@op("TreeEnsembleClassifier", domain=ML)
def tree_ensemble_classifier(n, x):
    labels, is_string = class_labels(n)
    n_classes = len(labels)
    forest = _prepared(n, lambda n: legacy_forest(n, "class", n_classes))
    rows = as_rows(x)
    score, has = aggregate(forest, leaves(forest, rows), "SUM")
    base = floats(n, "base_values", [])
    transform = post_transform_name(n.attr("post_transform"))
    if n_classes > 2:
        if len(base):
            score = score.at[:, :len(base)].add(jnp.asarray(base, score.dtype))
            has = has.at[:, :len(base)].set(True)
        best = jnp.argmax(jnp.where(has, score, -jnp.inf), axis=1)
        scores = apply_post_transform(score, transform)
        return label_output(best, labels, is_string), scores.astype(jnp.float32)
    if n_classes != 2:
        raise Unsupported(f"TreeEnsembleClassifier with {n_classes} class label(s)")
    class_ids = set(int(c) for c in n.attr("class_ids", []))
    weights = floats(n, "class_weights", [])
    binary_case = len(class_ids) == 1
    all_positive = bool((weights >= 0).all())
    index, literal, scores = _two_classes(score, has, base, transform, binary_case, all_positive)
    return label_output(index, labels, is_string, literal), scores.astype(jnp.float32)


def _two_classes(score, has, base, transform: str, binary_case: bool, all_positive: bool):
    """ORT's TreeAggregatorClassifier.FinalizeScores for two class labels, row-wise."""
    s0, s1, h0, h1 = score[:, 0], score[:, 1], has[:, 0], has[:, 1]
    extra = jnp.full(s0.shape, -1, jnp.int32)  # ORT's write_additional_scores
    if len(base) == 2:
        b0, b1 = float(base[0]), float(base[1])
        s1, s0 = jnp.where(h1, b1 + s0, s1 + b1), jnp.where(h1, -(b1 + s0), s0 + b0)
        two = jnp.ones(s0.shape, bool)
    elif len(base) == 1:
        s0 = s0 + float(base[0])
        two = h1
    else:
        if len(base) == 0:
            extra = jnp.full(s0.shape, 3, jnp.int32)
        two = h1 if len(base) == 0 else jnp.ones(s0.shape, bool)
    positive = jnp.where(two & h1, s1, jnp.where(h0, s0, 0))
    literal = None
    if binary_case:
        if all_positive:
            win = positive > 0.5
            extra = jnp.where(win, 0, 1)
        else:
            win = positive > 0
            extra = jnp.where(win, 2, 3)
    else:
        win = positive > 0
        literal = jnp.ones(s0.shape, bool)
    index = win.astype(jnp.int32)
    pair = apply_post_transform(jnp.stack([s0, s1], axis=1), transform)
    if transform == "PROBIT":
        single = jnp.stack([probit(s0), jnp.zeros_like(s0)], axis=1)
    else:
        complement = jnp.stack([1 - s0, s0], axis=1)
        mirrored = jnp.stack([logistic(-s0), logistic(s0)], axis=1) if transform == "LOGISTIC" \
            else jnp.stack([-s0, s0], axis=1)
        alone = jnp.stack([s0, jnp.zeros_like(s0)], axis=1)
        e = extra[:, None]
        single = jnp.where(e <= 1, complement, mirrored)
        single = jnp.where(e < 0, alone, single)
    return index, literal, jnp.where(two[:, None], pair, single)


__all__ = ["Forest", "aggregate", "leaves", "legacy_forest", "v5_forest"]
