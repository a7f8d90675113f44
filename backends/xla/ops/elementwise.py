"""Elementwise arithmetic and activations."""

from __future__ import annotations

import jax
from jax import lax

from . import op
from ._common import is_const, jnp, np, upcast, xp


def _unary(name: str, fn_name: str):
    def lowered(n, x):
        return getattr(xp(x), fn_name)(x)

    lowered.__name__ = name.lower()
    op(name)(lowered)


for _name, _fn in [("Abs", "abs"), ("Neg", "negative"), ("Exp", "exp"), ("Log", "log"), ("Sqrt", "sqrt"),
                   ("Sin", "sin"), ("Cos", "cos"), ("Tan", "tan"), ("Asin", "arcsin"), ("Acos", "arccos"),
                   ("Atan", "arctan"), ("Sinh", "sinh"), ("Cosh", "cosh"), ("Asinh", "arcsinh"),
                   ("Acosh", "arccosh"), ("Atanh", "arctanh"), ("Tanh", "tanh"), ("Ceil", "ceil"),
                   ("Floor", "floor"), ("Round", "round"), ("Sign", "sign"), ("IsNaN", "isnan")]:
    _unary(_name, _fn)


@op("Identity")
def identity(n, x):
    return x


@op("Reciprocal")
def reciprocal(n, x):
    return (1 / x).astype(x.dtype) if is_const(x) else jnp.reciprocal(x)


@op("Erf")
def erf(n, x):
    return jax.scipy.special.erf(x)


@op("Sigmoid")
def sigmoid(n, x):
    return jax.nn.sigmoid(x)


@op("Relu")
def relu(n, x):
    return jnp.maximum(x, jnp.zeros((), x.dtype))


@op("IsInf")
def isinf(n, x):
    pos, neg = n.attr("detect_positive", 1), n.attr("detect_negative", 1)
    if pos and neg:
        return jnp.isinf(x)
    if pos:
        return jnp.isposinf(x)
    if neg:
        return jnp.isneginf(x)
    return jnp.zeros(x.shape, bool)


def _scalar(x, value):
    return jnp.asarray(value, dtype=x.dtype)


@op("LeakyRelu")
def leaky_relu(n, x):
    return jnp.where(x >= 0, x, x * _scalar(x, n.attr("alpha", 0.01)))


@op("ThresholdedRelu")
def thresholded_relu(n, x):
    return jnp.where(x > _scalar(x, n.attr("alpha", 1.0)), x, _scalar(x, 0))


@op("Elu")
def elu(n, x):
    alpha = _scalar(x, n.attr("alpha", 1.0))
    return jnp.where(x > 0, x, alpha * jnp.expm1(x))


@op("Selu")
def selu(n, x):
    alpha = _scalar(x, n.attr("alpha", 1.67326319217681884765625))
    gamma = _scalar(x, n.attr("gamma", 1.05070102214813232421875))
    return jnp.where(x > 0, gamma * x, gamma * alpha * jnp.expm1(x))


@op("Celu")
def celu(n, x):
    alpha = _scalar(x, n.attr("alpha", 1.0))
    return jnp.maximum(x, 0) + jnp.minimum(0, alpha * jnp.expm1(x / alpha))


@op("HardSigmoid")
def hard_sigmoid(n, x):
    alpha, beta = _scalar(x, n.attr("alpha", 0.2)), _scalar(x, n.attr("beta", 0.5))
    return jnp.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@op("HardSwish")
def hard_swish(n, x):
    return x * jnp.clip(x * _scalar(x, 1 / 6) + _scalar(x, 0.5), 0, 1).astype(x.dtype)


@op("Softplus")
def softplus(n, x):
    return jax.nn.softplus(x)


@op("Softsign")
def softsign(n, x):
    return x / (1 + jnp.abs(x))


@op("Mish")
def mish(n, x):
    return x * jnp.tanh(jax.nn.softplus(x))


@op("Swish")
def swish(n, x):
    return x * jax.nn.sigmoid(_scalar(x, n.attr("alpha", 1.0)) * x)


@op("Gelu")
def gelu(n, x):
    y, dtype = upcast(jnp.asarray(x))
    if n.attr("approximate", "none") == "tanh":
        out = jax.nn.gelu(y, approximate=True)
    else:
        out = 0.5 * y * (1 + jax.scipy.special.erf(y / np.sqrt(2).astype(y.dtype)))
    return out.astype(dtype)


@op("Shrink")
def shrink(n, x):
    bias, lambd = _scalar(x, n.attr("bias", 0.0)), _scalar(x, n.attr("lambd", 0.5))
    return jnp.where(x < -lambd, x + bias, jnp.where(x > lambd, x - bias, _scalar(x, 0)))


@op("PRelu")
def prelu(n, x, slope):
    return jnp.where(x < 0, x * slope, x).astype(x.dtype)


@op("Clip", since=1)
def clip_v1(n, x):
    lo, hi = n.attr("min", -np.inf), n.attr("max", np.inf)
    return jnp.clip(x, _scalar(x, lo), _scalar(x, hi))


@op("Clip", since=11)
def clip(n, x, lo=None, hi=None):
    m = xp(x, lo, hi)
    if lo is not None:
        x = m.maximum(x, lo)
    if hi is not None:
        x = m.minimum(x, hi)
    return x


def _binary(name: str, fn_name: str):
    def lowered(n, a, b):
        return getattr(xp(a, b), fn_name)(a, b)

    lowered.__name__ = name.lower()
    op(name)(lowered)


for _name, _fn in [("Add", "add"), ("Sub", "subtract"), ("Mul", "multiply")]:
    _binary(_name, _fn)


def _same(m, result, dtype):
    return result.astype(dtype) if result.dtype != dtype else result


@op("Add", "Sub", "Mul", since=14)
def arith14(n, a, b):
    m = xp(a, b)
    fn = {"Add": m.add, "Sub": m.subtract, "Mul": m.multiply}[n.node.op_type]
    return _same(m, fn(a, b), a.dtype)


@op("Div")
def div(n, a, b):
    m = xp(a, b)
    if np.issubdtype(a.dtype, np.integer):
        if m is np:
            q = np.trunc(a.astype(np.float64) / b).astype(a.dtype)
            return q
        return lax.div(a, b.astype(a.dtype))
    return _same(m, m.divide(a, b), a.dtype)


@op("Pow")
def pow_(n, a, b):
    m = xp(a, b)
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return m.power(a, b.astype(a.dtype))
    if np.issubdtype(a.dtype, np.integer):
        return m.power(a.astype(np.float64), b).astype(a.dtype)
    return m.power(a, b.astype(a.dtype)).astype(a.dtype)


@op("Mod")
def mod(n, a, b):
    m = xp(a, b)
    if n.attr("fmod", 0):
        return m.fmod(a, b)
    return m.mod(a, b)


def _variadic(fn_name: str):
    def lowered(n, *xs):
        m = xp(*xs)
        out = xs[0]
        for x in xs[1:]:
            out = getattr(m, fn_name)(out, x)
        return out

    return lowered


op("Max")(_variadic("maximum"))
op("Min")(_variadic("minimum"))
op("Sum")(_variadic("add"))


@op("Mean")
def mean(n, *xs):
    m = xp(*xs)
    out = xs[0]
    for x in xs[1:]:
        out = m.add(out, x)
    return (out / len(xs)).astype(xs[0].dtype)


@op("BitShift")
def bit_shift(n, a, b):
    m = xp(a, b)
    if n.attr("direction") == "LEFT":
        return m.left_shift(a, b.astype(a.dtype))
    return m.right_shift(a, b.astype(a.dtype))


@op("Where")
def where(n, c, a, b):
    return xp(c, a, b).where(c, a, b)
