"""Control flow: If -> lax.cond, Loop -> unrolled / lax.while_loop / lax.scan, Scan -> lax.scan.

A condition or trip count known while tracing is resolved in Python (the taken
branch only; short loops unrolled), so shapes inside stay static. A loop whose
number of iterations depends on the data and which stacks per-iteration outputs
has a data-dependent output shape: it raises DynamicShape and the executable
runs that shape signature op by op instead (recorded in provenance).
"""

from __future__ import annotations

import jax
from jax import lax

from . import op
from ..jaxenv import is_tracer
from ._common import DynamicShape, is_const, jnp, np

UNROLL_LIMIT = 64  # loops with a static trip count up to this are unrolled while tracing


def _concrete_bool(value):
    """True/False when known (numpy, or a concrete array when eager), None for a tracer."""
    if value is None:
        return True
    if is_tracer(value):
        return None
    return bool(np.asarray(value).reshape(-1)[0])


def _as_jax(value):
    if isinstance(value, list) or value is None:
        # sequences and optionals cannot be lax.cond/while_loop state: run this signature eagerly
        raise DynamicShape("sequence or optional values in control flow that depends on the input data")
    return jnp.asarray(value)


@op("If", fold=False)
def if_(n, cond):
    taken = _concrete_bool(cond)
    if taken is not None:
        outs = n.run_subgraph(n["then_branch"] if taken else n["else_branch"])
        return tuple(outs)

    def branch(graph):
        def run(_):
            return tuple(_as_jax(v) for v in n.run_subgraph(graph))

        return run

    then_out = jax.eval_shape(branch(n["then_branch"]), None)
    else_out = jax.eval_shape(branch(n["else_branch"]), None)
    if [(o.shape, o.dtype) for o in then_out] != [(o.shape, o.dtype) for o in else_out]:
        raise DynamicShape("If branches return different shapes and the condition depends on the input data")
    return tuple(lax.cond(jnp.asarray(cond).reshape(()), branch(n["then_branch"]), branch(n["else_branch"]), None))


@op("Loop", fold=False)
def loop(n, trip_count=None, cond=None, *initial):
    body = n["body"]
    n_carried = len(initial)
    n_scan = len(body.outputs) - 1 - n_carried
    max_trips = None
    if trip_count is not None:
        known = trip_count if is_const(trip_count) or not is_tracer(trip_count) else None
        if known is None:
            if n_scan:
                raise DynamicShape("Loop trip count depends on the input data and the loop stacks outputs")
        else:
            max_trips = int(np.asarray(known).reshape(-1)[0])
    carried = list(initial)
    keep_going = cond
    scans: list[list] = [[] for _ in range(n_scan)]
    i = 0
    eager = n.ctx.eager
    # Python loop while every decision is known: unrolled in the trace (or plain eager execution)
    while max_trips is None or i < max_trips:
        go = _concrete_bool(keep_going)
        if go is None:
            break
        if not go:
            return tuple(carried) + tuple(_stack(s) for s in scans)
        if not eager and max_trips is not None and max_trips > UNROLL_LIMIT and i == 0:
            break
        if not eager and max_trips is None and i >= UNROLL_LIMIT:
            break
        outs = n.run_subgraph(body, [np.asarray(i, np.int64), keep_going if keep_going is not None
                                     else np.asarray(True)] + carried)
        keep_going = outs[0]
        carried = list(outs[1:1 + n_carried])
        for k, value in enumerate(outs[1 + n_carried:]):
            scans[k].append(value)
        i += 1
    else:
        return tuple(carried) + tuple(_stack(s) for s in scans)
    # the rest of the loop as one XLA loop
    if n_scan:
        if _always_true(body) and max_trips is not None:
            return _loop_as_scan(n, body, i, max_trips, keep_going, carried, scans, n_carried)
        raise DynamicShape("Loop stacks outputs and stops on a condition computed from the input data")
    limit = jnp.asarray(max_trips if max_trips is not None else np.iinfo(np.int64).max, jnp.int64) \
        if trip_count is None or max_trips is not None else jnp.asarray(trip_count).reshape(()).astype(jnp.int64)

    def cond_fn(state):
        index, go, _ = state
        return jnp.logical_and(index < limit, go)

    def body_fn(state):
        index, go, values = state
        outs = n.run_subgraph(body, [index, go] + list(values))
        return index + 1, _as_jax(outs[0]).reshape(()).astype(bool), tuple(_as_jax(v) for v in outs[1:1 + n_carried])

    start = (jnp.asarray(i, jnp.int64), jnp.asarray(True if keep_going is None else keep_going).reshape(()).astype(bool),
             tuple(_as_jax(v) for v in carried))
    _, _, final = lax.while_loop(cond_fn, body_fn, start)
    return tuple(final)


def _always_true(body) -> bool:
    """The body's condition output is its condition input passed through (a counted loop)."""
    if body.outputs[0] == body.inputs[1]:
        return True
    for node in body.nodes:
        if node.op_type == "Identity" and node.outputs[0] == body.outputs[0] and node.inputs[0] == body.inputs[1]:
            return True
    return False


def _loop_as_scan(n, body, start, trips, keep_going, carried, scans, n_carried):
    def step(values, index):
        outs = n.run_subgraph(body, [index, jnp.asarray(True)] + list(values))
        return tuple(_as_jax(v) for v in outs[1:1 + n_carried]), tuple(_as_jax(v) for v in outs[1 + n_carried:])

    final, stacked = lax.scan(step, tuple(_as_jax(v) for v in carried), jnp.arange(start, trips, dtype=jnp.int64))
    outs = list(final)
    for k, ys in enumerate(stacked):
        done = [jnp.asarray(v) for v in scans[k]]
        outs.append(jnp.concatenate([jnp.stack(done), ys]) if done else ys)
    return tuple(outs)


def _stack(values):
    if not values:
        return np.zeros((0,), np.float32)
    if all(is_const(v) for v in values):
        return np.stack([np.asarray(v) for v in values])
    return jnp.stack([jnp.asarray(v) for v in values])


@op("Scan", since=9, fold=False)
def scan(n, *inputs):
    body = n["body"]
    m = n["num_scan_inputs"]
    states = list(inputs[:len(inputs) - m])
    xs = list(inputs[len(inputs) - m:])
    return _scan(n, body, states, xs)


@op("Scan", since=8, fold=False)
def scan_v8(n, _sequence_lens, *inputs):
    # only opset 8 lands here: the lookup picks ``scan`` (since=9) for every later opset
    body = n["body"]
    m = n["num_scan_inputs"]
    states = list(inputs[:len(inputs) - m])
    xs = list(inputs[len(inputs) - m:])
    batch = (states[0] if states else xs[0]).shape[0]
    results = []
    for b in range(batch):
        results.append(_scan(n, body, [s[b] for s in states], [x[b] for x in xs]))
    return tuple(jnp.stack([r[k] for r in results]) for k in range(len(results[0])))


def _scan(n, body, states, xs):
    m = len(xs)
    n_states = len(states)
    in_axes = n.attr("scan_input_axes") or [0] * m
    in_dirs = n.attr("scan_input_directions") or n.attr("directions") or [0] * m
    n_out = len(body.outputs) - n_states
    out_axes = n.attr("scan_output_axes") or [0] * n_out
    out_dirs = n.attr("scan_output_directions") or [0] * n_out
    seqs = []
    for x, axis, direction in zip(xs, in_axes, in_dirs):
        x = jnp.moveaxis(jnp.asarray(x), axis if axis >= 0 else axis + x.ndim, 0)
        seqs.append(jnp.flip(x, 0) if direction else x)

    def step(carry, slices):
        outs = n.run_subgraph(body, list(carry) + list(slices))
        return tuple(_as_jax(v) for v in outs[:n_states]), tuple(_as_jax(v) for v in outs[n_states:])

    final, ys = lax.scan(step, tuple(_as_jax(s) for s in states), tuple(seqs))
    outs = list(final)
    for y, axis, direction in zip(ys, out_axes, out_dirs):
        if direction:
            y = jnp.flip(y, 0)
        outs.append(jnp.moveaxis(y, 0, axis if axis >= 0 else axis + y.ndim))
    return tuple(outs)
