"""Sequences (Python lists of arrays while tracing) and optionals (a value or None)."""

from __future__ import annotations

from . import op
from ._common import norm_axis, np, static_ints, static_scalar, xp


def _position(pos, length, default):
    if pos is None:
        return default
    p = int(static_scalar(pos, "sequence position"))
    return p + length if p < 0 else p


@op("SequenceConstruct", fold=False)
def sequence_construct(n, *xs):
    return [x for x in xs]


@op("SequenceEmpty", fold=False)
def sequence_empty(n):
    return []


@op("SequenceAt", fold=False)
def sequence_at(n, seq, pos):
    return seq[_position(pos, len(seq), 0)]


@op("SequenceInsert", fold=False)
def sequence_insert(n, seq, x, pos=None):
    out = list(seq)
    out.insert(_position(pos, len(seq), len(seq)), x)
    return out


@op("SequenceErase", fold=False)
def sequence_erase(n, seq, pos=None):
    out = list(seq)
    del out[_position(pos, len(seq), len(seq) - 1)]
    return out


@op("SequenceLength", fold=False)
def sequence_length(n, seq):
    return np.asarray(len(seq), np.int64)


@op("ConcatFromSequence", fold=False)
def concat_from_sequence(n, seq):
    axis = n["axis"]
    if n.attr("new_axis", 0):
        axis = norm_axis(axis, seq[0].ndim + 1)
        return xp(*seq).stack(seq, axis=axis)
    return xp(*seq).concatenate(seq, axis=norm_axis(axis, seq[0].ndim))


@op("SplitToSequence", fold=False)
def split_to_sequence(n, x, split=None):
    axis = norm_axis(n.attr("axis", 0), x.ndim)
    keep = n.attr("keepdims", 1)
    dim = x.shape[axis]
    if split is None:
        parts = [x[(slice(None),) * axis + (i,)] if not keep else
                 x[(slice(None),) * axis + (slice(i, i + 1),)] for i in range(dim)]
        return parts
    sizes = static_ints(split, "SplitToSequence split")
    if len(sizes) == 1 and np.asarray(split).ndim == 0:
        step = sizes[0]
        sizes = [min(step, dim - i) for i in range(0, dim, step)]
    out, start = [], 0
    for size in sizes:
        out.append(x[(slice(None),) * axis + (slice(start, start + size),)])
        start += size
    return out


@op("SequenceMap", fold=False)
def sequence_map(n, seq, *others):
    body = n["body"]
    results = None
    for i in range(len(seq)):
        extra = [o[i] if isinstance(o, list) else o for o in others]
        outs = n.run_subgraph(body, [seq[i]] + extra)
        if results is None:
            results = [[] for _ in outs]
        for k, v in enumerate(outs):
            results[k].append(v)
    if results is None:
        return tuple([] for _ in range(n.n_outputs))
    return tuple(results)


@op("Optional", fold=False)
def optional(n, x=None):
    return x


@op("OptionalHasElement", fold=False)
def optional_has_element(n, x=None):
    return np.asarray(x is not None)


@op("OptionalGetElement", fold=False)
def optional_get_element(n, x):
    return x
