"""Values an XLA program cannot hold: string tensors and ZipMap's list of dicts.

JAX arrays hold numbers only. Classic-ML graphs (``ai.onnx.ml``) take string inputs
(LabelEncoder, CategoryMapper, OneHotEncoder keyed by strings) and give string labels
or a ZipMap (one ``{label: probability}`` dict per row, what ONNX Runtime returns).
Both are carried inside the traced program as integer codes into a table that is
known when the graph is lowered:

- a string **input** is encoded on the host before the program runs: each string becomes
  its index in the vocabulary of the ops that read it (``string_vocabulary``), or the
  vocabulary's length for a string none of them knows;
- a string **output** leaves the program as codes and is decoded on the host
  (``HostStrings.table[codes]``); a ZipMap output leaves as the probability matrix and
  becomes the list of dicts on the host.

Ops that read strings take a ``HostStrings`` (codes + table) in place of an array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class HostStrings:
    """A string tensor inside the program: ``codes`` (an int array) index ``table`` (numpy object array).

    ``table`` may hold None for "a string no op of the graph knows" (input codes past the vocabulary).
    """

    codes: Any
    table: np.ndarray

    @property
    def shape(self):
        return tuple(self.codes.shape)

    @property
    def ndim(self) -> int:
        return len(self.codes.shape)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        table = np.asarray(list(self.table) + [""], dtype=object)
        codes = np.asarray(codes)
        return table[np.clip(codes, 0, len(table) - 1)].astype(object)


@dataclass(frozen=True)
class HostZipMap:
    """ZipMap's output inside the program: the [N, C] probabilities and the C labels (keys)."""

    values: Any
    labels: tuple

    def decode(self, values: np.ndarray) -> list[dict]:
        # ORT builds each row as a std::map: keys in sorted order
        values = np.asarray(values, dtype=np.float32).reshape(-1, len(self.labels))
        order = sorted(range(len(self.labels)), key=lambda i: self.labels[i])
        return [{self.labels[i]: float(row[i]) for i in order} for row in values]


HOST_TYPES = (HostStrings, HostZipMap)


def is_host_value(value: Any) -> bool:
    return isinstance(value, HOST_TYPES)


def device_part(value: Any) -> Any:
    """What the traced function returns for a host value (its codes or probabilities)."""
    return value.codes if isinstance(value, HostStrings) else value.values


# -- string inputs ------------------------------------------------------------------------

# (domain, op type) -> function(node attrs) -> the strings that op looks up; registered by the
# op modules that read string inputs.
STRING_READERS: dict[tuple[str, str], Callable[[dict], list[str]]] = {}
# ops that only move elements: on a string tensor they run on its codes and keep its table
# (their consumers are followed to find the vocabulary of a string input)
STRUCTURAL = {("", name) for name in ("Identity", "Gather", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                      "Transpose", "Slice", "Expand", "Concat", "Tile", "Split")}
STRUCTURAL.add(("ai.onnx.ml", "ArrayFeatureExtractor"))
PASS_THROUGH = tuple(sorted(name for _, name in STRUCTURAL))


def reads_strings(domain: str, *op_types: str):
    def register(fn: Callable[[dict], list[str]]):
        for op_type in op_types:
            STRING_READERS[(domain, op_type)] = fn
        return fn

    return register


class StringInputError(Exception):
    """A string input feeds an op that cannot take it as codes (the message names both)."""


def string_vocabulary(graph, name: str) -> list[str]:
    """Every string the ops reading graph input ``name`` look up, in a fixed order."""
    words: dict[str, None] = {}
    pending = [name]
    seen = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in graph.nodes:
            if current not in node.inputs:
                continue
            if (node.domain, node.op_type) in STRUCTURAL:
                pending.extend(node.outputs)
                continue
            reader = STRING_READERS.get((node.domain, node.op_type))
            if reader is None:
                op_name = node.op_type if not node.domain else f"{node.domain}::{node.op_type}"
                raise StringInputError(f"string input '{name}' feeds {op_name}, which the XLA lowering "
                                       f"cannot run on strings")
            for word in reader(node.attrs):
                words.setdefault(word, None)
    return list(words)


def call_with_strings(node, fn, n, args: list):
    """Run an op whose inputs include a ``HostStrings``: structural ops run on the codes (tables of
    several string inputs are joined), string readers take them as they are, anything else is refused."""
    from .lower import Unsupported

    key = (node.domain, node.op_type)
    if key in STRING_READERS:
        return fn(n, *args)
    if node.op_type == "Identity":
        return args[0]
    if key not in STRUCTURAL or not any(isinstance(a, HostStrings) for a in args):
        name = node.op_type if not node.domain else f"{node.domain}::{node.op_type}"
        raise Unsupported(f"{name} on a string tensor or ZipMap output has no XLA lowering")
    tables, offset, plain = [], 0, []
    for arg in args:
        if isinstance(arg, HostStrings):
            plain.append(arg.codes + offset if offset else arg.codes)
            tables.extend(arg.table)
            offset += len(arg.table)
        else:
            plain.append(arg)
    table = np.asarray(tables, dtype=object)
    result = fn(n, *plain)
    if isinstance(result, (tuple, list)):
        return type(result)(HostStrings(r, table) for r in result)
    return HostStrings(result, table)


def encode_strings(array: np.ndarray, vocabulary: list[str]) -> np.ndarray:
    """Host side: strings -> int32 codes into ``vocabulary`` (unknown: len(vocabulary))."""
    index = {word: i for i, word in enumerate(vocabulary)}
    unknown = len(vocabulary)
    flat = [index.get(_text(v), unknown) for v in np.asarray(array, dtype=object).reshape(-1)]
    return np.asarray(flat, dtype=np.int32).reshape(np.shape(array))


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def lookup_table(table: np.ndarray, keys: list, values: np.ndarray, default: Any) -> np.ndarray:
    """For each entry of ``table`` (strings or None), its value under ``keys -> values``, else ``default``."""
    position = {key: i for i, key in enumerate(keys)}
    out = [values[position[t]] if t is not None and t in position else default for t in table]
    return np.asarray(out, dtype=values.dtype if values.dtype != object else object)


__all__ = ["HOST_TYPES", "HostStrings", "HostZipMap", "PASS_THROUGH", "STRUCTURAL", "call_with_strings", "STRING_READERS", "StringInputError",
           "device_part", "encode_strings", "is_host_value", "lookup_table", "reads_strings",
           "string_vocabulary"]
