"""Classic-ML preprocessing and plumbing (ai.onnx.ml): Scaler, Normalizer, Binarizer, Imputer,
OneHotEncoder, LabelEncoder, CategoryMapper, ArrayFeatureExtractor, FeatureVectorizer, ZipMap.

String tensors arrive and leave as ``HostStrings`` (codes into a table, see ``hostvalues``):
a lookup keyed by strings becomes a gather from a table built once per op.
"""

from __future__ import annotations

from typing import Any

from ..hostvalues import HostStrings, HostZipMap, lookup_table, reads_strings
from . import op
from ._common import Unsupported, is_const, jnp, np
from .ml_common import ML


def _float(x):
    return jnp.asarray(x).astype(jnp.float32)


@op("Scaler", domain=ML)
def scaler(n, x):
    offset = np.asarray(n.attr("offset") or [0.0], np.float32)
    scale = np.asarray(n.attr("scale") or [1.0], np.float32)
    return (_float(x) - offset) * scale


@op("Normalizer", domain=ML)
def normalizer(n, x):
    kind = n.attr("norm", "MAX")
    y = _float(x)
    if kind == "MAX":
        total = jnp.max(y, axis=-1, keepdims=True)
        return jnp.where(total != 0, y / jnp.where(total != 0, total, 1), y)
    if kind == "L1":
        total = jnp.sum(jnp.abs(y), axis=-1, keepdims=True)
        return jnp.where(total != 0, y / jnp.where(total != 0, total, 1), y)
    if kind == "L2":
        squares = y * y
        total = jnp.sum(squares, axis=-1, keepdims=True)
        root = jnp.sqrt(squares / jnp.where(total != 0, total, 1))
        return jnp.where(total != 0, jnp.where(y < 0, -root, root), y)
    raise Unsupported(f"Normalizer norm={kind!r}")


@op("Binarizer", domain=ML)
def binarizer(n, x):
    x = jnp.asarray(x)
    return jnp.where(x > jnp.asarray(n.attr("threshold", 0.0), x.dtype), 1, 0).astype(x.dtype)


@op("Imputer", domain=ML)
def imputer(n, x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        values = np.asarray(n.attr("imputed_value_floats") or [0.0], np.float32)
        replaced = float(n.attr("replaced_value_float", 0.0))
        hit = jnp.isnan(x) if np.isnan(replaced) else x == replaced
    else:
        values = np.asarray(n.attr("imputed_value_int64s") or [0], np.int64)
        hit = x == int(n.attr("replaced_value_int64", 0))
    return jnp.where(hit, jnp.asarray(values, x.dtype), x)


# -- lookups -----------------------------------------------------------------------------

def _codes_lookup(x: HostStrings, table: np.ndarray):
    """``table[i]`` is the answer for code i (codes past the table answer its last entry)."""
    return jnp.take(jnp.asarray(table), jnp.clip(x.codes, 0, len(table) - 1))


def _numeric_lookup(x, keys: np.ndarray, values: np.ndarray, default: Any):
    """values[keys == x] per element, ``default`` where no key matches (keys sorted once on the host)."""
    x = jnp.asarray(x)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    if keys.size == 0:
        return jnp.zeros(x.shape, jnp.int32), jnp.zeros(x.shape, bool), np.zeros(1, values.dtype)
    where = jnp.clip(jnp.searchsorted(jnp.asarray(keys), x.astype(keys.dtype)), 0, len(keys) - 1)
    found = jnp.asarray(keys)[where] == x.astype(keys.dtype)
    if np.issubdtype(keys.dtype, np.floating):
        found = found | (jnp.isnan(x) & jnp.isnan(jnp.asarray(keys)[where]))
    return where, found, values


def _encoder_tables(attrs: dict):
    """(keys, values, default) of a LabelEncoder in its opset-4/2 or opset-1 form."""
    for key_kind in ("tensor", "strings", "int64s", "floats"):
        if attrs.get(f"keys_{key_kind}") is not None:
            break
    else:
        key_kind = None
    if key_kind is not None:
        keys = attrs[f"keys_{key_kind}"]
        for value_kind in ("tensor", "strings", "int64s", "floats"):
            if attrs.get(f"values_{value_kind}") is not None:
                values = attrs[f"values_{value_kind}"]
                break
        else:
            raise Unsupported("LabelEncoder without values")
        keys, values = _array(keys), _array(values)
        default = attrs.get("default_tensor")
        if default is not None:
            default = _array(default).reshape(-1)[0]
        elif values.dtype == object:
            default = attrs.get("default_string", "_Unused")
        elif np.issubdtype(values.dtype, np.floating):
            default = attrs.get("default_float", -0.0)
        else:
            default = attrs.get("default_int64", -1)
        return keys, values, default
    classes = np.asarray(attrs.get("classes_strings") or [], dtype=object)
    return classes, classes, None  # opset 1: handled by the caller (direction depends on the input)


def _array(value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S", "O"):
        return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)], dtype=object)
    return array.reshape(-1)


@reads_strings(ML, "LabelEncoder")
def _label_encoder_words(attrs: dict) -> list[str]:
    keys, _, _ = _encoder_tables(attrs)
    return [str(k) for k in keys] if keys.dtype == object else []


@op("LabelEncoder", domain=ML)
def label_encoder(n, x):
    keys, values, default = _encoder_tables(n.node.attrs)
    if default is None:  # opset 1: string -> index, or index -> string
        if isinstance(x, HostStrings) or (is_const(x) and np.asarray(x).dtype == object):
            keys, values = keys, np.arange(len(keys), dtype=np.int64)
            default = int(n.attr("default_int64", -1))
        else:
            values = keys
            keys = np.arange(len(values), dtype=np.int64)
            default = n.attr("default_string", "_Unused")
    return _lookup(x, keys, values, default)


def _lookup(x, keys: np.ndarray, values: np.ndarray, default: Any):
    strings_out = values.dtype == object
    if is_const(x) and np.asarray(x).dtype == object:  # a constant string tensor: on the host
        table = dict(zip((str(k) for k in keys), values))
        flat = [table.get(str(v), default) for v in np.asarray(x).reshape(-1)]
        return np.asarray(flat, dtype=values.dtype).reshape(np.shape(x))
    if isinstance(x, HostStrings):
        if keys.dtype != object:
            raise Unsupported("a string tensor looked up by numeric keys")
        if strings_out:
            out_table = np.asarray(list(values) + [default], dtype=object)
            codes = lookup_table(x.table, list(keys), np.arange(len(values), dtype=np.int32), len(values))
            return HostStrings(_codes_lookup(x, codes.astype(np.int32)), out_table)
        return _codes_lookup(x, lookup_table(x.table, list(keys), values, default))
    if keys.dtype == object:
        raise Unsupported("a numeric tensor looked up by string keys")
    where, found, sorted_values = _numeric_lookup(x, keys, values, default)
    if strings_out:
        out_table = np.asarray(list(sorted_values) + [default], dtype=object)
        return HostStrings(jnp.where(found, where, len(sorted_values)).astype(jnp.int32), out_table)
    return jnp.where(found, jnp.asarray(sorted_values)[where], jnp.asarray(default, sorted_values.dtype))


@reads_strings(ML, "CategoryMapper")
def _category_words(attrs: dict) -> list[str]:
    return list(attrs.get("cats_strings") or [])


@op("CategoryMapper", domain=ML)
def category_mapper(n, x):
    strings = np.asarray(n.attr("cats_strings") or [], dtype=object)
    ints = np.asarray(n.attr("cats_int64s") or [], np.int64)
    if isinstance(x, HostStrings) or (is_const(x) and np.asarray(x).dtype == object):
        return _lookup(x, strings, ints, int(n.attr("default_int64", -1)))
    return _lookup(x, ints, strings, n.attr("default_string", "_Unused"))


@reads_strings(ML, "OneHotEncoder")
def _one_hot_words(attrs: dict) -> list[str]:
    return list(attrs.get("cats_strings") or [])


@op("OneHotEncoder", domain=ML)
def one_hot_encoder(n, x):
    strings = n.attr("cats_strings")
    if strings:
        if not isinstance(x, HostStrings):
            raise Unsupported("OneHotEncoder with string categories needs a string input")
        index = lookup_table(x.table, list(strings), np.arange(len(strings), dtype=np.int32), -1)
        position = _codes_lookup(x, index.astype(np.int32))
        depth = len(strings)
    else:
        cats = np.asarray(n.attr("cats_int64s") or [], np.int64)
        where, found, order = _numeric_lookup(x, cats, np.arange(len(cats)), -1)
        position = jnp.where(found, jnp.asarray(order)[where], -1)
        depth = len(cats)
    return (position[..., None] == jnp.arange(depth)).astype(jnp.float32)


@op("ArrayFeatureExtractor", domain=ML)
def array_feature_extractor(n, x, indices):
    indices = jnp.asarray(indices).reshape(-1)
    x = jnp.asarray(x)
    out = jnp.take(x, indices, axis=-1)
    return out[None, :] if x.ndim == 1 else out


@op("FeatureVectorizer", domain=ML)
def feature_vectorizer(n, *inputs):
    dims = [int(d) for d in n.attr("inputdimensions") or []]
    parts = []
    for value, width in zip(inputs, dims):
        value = _float(value)
        if value.ndim == 1:
            value = value[None, :]
        value = value.reshape(value.shape[0], -1)
        have = value.shape[1]
        if have >= width:
            value = value[:, :width]
        else:
            value = jnp.pad(value, ((0, 0), (0, width - have)))
        parts.append(value)
    return jnp.concatenate(parts, axis=1)


@op("ZipMap", domain=ML)
def zip_map(n, x):
    strings = n.attr("classlabels_strings")
    labels = tuple(strings) if strings else tuple(int(v) for v in n.attr("classlabels_int64s") or [])
    values = _float(x)
    if values.ndim != 2 or values.shape[1] != len(labels):
        raise Unsupported(f"ZipMap of shape {tuple(values.shape)} with {len(labels)} labels")
    return HostZipMap(values, labels)


__all__ = ["array_feature_extractor", "binarizer", "category_mapper", "feature_vectorizer", "imputer",
           "label_encoder", "normalizer", "one_hot_encoder", "scaler", "zip_map"]
