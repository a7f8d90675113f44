"""Comparisons, boolean logic and bitwise ops."""

from __future__ import annotations

from . import op
from ._common import xp

_BINARY = {"Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
           "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or", "Xor": "logical_xor",
           "BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


def _binary(fn_name: str):
    def lowered(n, a, b):
        return getattr(xp(a, b), fn_name)(a, b)

    return lowered


for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn))


@op("Not")
def not_(n, x):
    return xp(x).logical_not(x)


@op("BitwiseNot")
def bitwise_not(n, x):
    return xp(x).bitwise_not(x)
