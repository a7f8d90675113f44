"""Conformance cases: a model source, the feeds to run it with, and where its reference comes from.

A case is plain data (picklable) so a spawned worker process can rebuild the
model from ``source`` (``builtin:mlp`` or a path) instead of receiving it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import portarun
from portarun import Model, models
from portarun.model import quantization_of

# Models above this many weight elements are checked against onnxruntime:cpu at fp32,
# because the reference evaluator (NumPy, op by op) becomes too slow for a CI run.
LARGE_MODEL_PARAMS = 5_000_000
REFERENCE_SMALL = "reference:cpu"
REFERENCE_LARGE = "onnxruntime:cpu"


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "builtin:NAME" or a path to an .onnx file
    dims: dict[str, int] = field(default_factory=dict)
    reference: str | None = None  # None: REFERENCE_SMALL, or REFERENCE_LARGE for big models and ops it lacks
    seed: int = 0
    tokens_axis: str | None = None  # symbolic dim counted as tokens (tokens/s), e.g. "seq"
    batch_axis: str = "batch"
    inputs: str | None = None  # the user's feeds: an .npz or a folder of them (portarun.samples)
    # the user's feeds as Python dicts (a list of samples); kept out of reports
    samples: tuple[dict[str, Any], ...] | None = field(default=None, repr=False, compare=False)

    def load(self) -> Model:
        return portarun.load(self.source)

    def user_samples(self, model: Model) -> list[dict[str, np.ndarray]] | None:
        """The user's samples, checked against the model; None when the case uses random feeds."""
        if self.samples is None and self.inputs is None:
            return None
        from portarun.samples import load_samples

        return load_samples(model, self.inputs if self.samples is None else list(self.samples)).samples

    def feeds(self, model: Model) -> dict[str, np.ndarray]:
        """The first user sample, else seeded random feeds that respect the graph (portarun.feeds)."""
        samples = self.user_samples(model)
        if samples:
            return samples[0]
        return portarun.random_feeds(model, seed=self.seed, dims=self.dims)

    def reference_target(self, model: Model) -> str:
        if self.reference:
            return self.reference
        params = sum(int(np.prod(t.dims)) for t in model.proto.graph.initializer)
        if params > LARGE_MODEL_PARAMS:
            return REFERENCE_LARGE
        # ops onnx's evaluator lacks (ZipMap, com.microsoft contrib ops): ONNX Runtime is the oracle
        precision = quantization_of(model) or "fp32"  # the reference runs the model as written
        if not portarun.get_backend(REFERENCE_SMALL.split(":")[0]).supports(model, REFERENCE_SMALL, precision):
            return REFERENCE_LARGE
        return REFERENCE_SMALL

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = None if self.samples is None else len(self.samples)  # a count, not the arrays
        return data


# Decoders join the default matrix at their smallest size: one prefill pass (batch x seq tokens, empty
# KV cache) proves the Llama-style graph (RMSNorm, RoPE, GQA attention, cache outputs) on every backend;
# the larger ones are for `portarun bench` and `portarun generate`.
DEFAULT_DECODERS = ("decoder-tiny",)


def builtin_cases(names: list[str] | None = None) -> list[Case]:
    """One case per built-in model (kind "model", plus the smallest decoder), with its default feed sizes."""
    cases = []
    default = models.names(kind="model") + [n for n in DEFAULT_DECODERS if n in models.names(kind="decoder")]
    for name in names or default:
        entry = models.get(name)
        dims = dict(entry.default_dims)
        cases.append(Case(name=f"builtin:{name}", source=f"builtin:{name}", dims=dims,
                          tokens_axis="seq" if "seq" in dims else None))
    return cases


def case_for(source: str, dims: dict[str, int] | None = None, *, reference: str | None = None,
             tokens_axis: str | None = None, feeds: Any = None) -> Case:
    """A case for a model the user names: a built-in (``builtin:mlp`` / ``mlp``) or a path.

    ``feeds``: the user's data (an .npz path or a folder of them, or a list of feed dicts), checked
    against the model now so a mismatch fails before any cell runs; None: random feeds."""
    text = str(source)
    inputs, samples = _feed_fields(feeds)
    bare = models.resolve_builtin(text)
    if bare is not None and bare in models.names():
        base = builtin_cases([bare])[0]
        case = Case(base.name, base.source, {**base.dims, **(dims or {})}, reference,
                    tokens_axis=tokens_axis or base.tokens_axis, inputs=inputs, samples=samples)
        model = case.load() if feeds is not None else None
    else:
        model = portarun.load(text)  # fails early with the loader's message when the path is wrong
        symbolic = {d for spec in model.inputs for d in (spec.shape or ()) if isinstance(d, str)}
        axis = tokens_axis or next((d for d in ("seq", "sequence", "sequence_length", "seq_len") if d in symbolic), None)
        case = Case(model.name or text, text, dict(dims or {}), reference, tokens_axis=axis, inputs=inputs,
                    samples=samples)
    if model is not None and feeds is not None:
        case.user_samples(model)  # validate now: the same messages as Executable.run
    return case


def _feed_fields(feeds: Any) -> tuple[str | None, tuple[dict[str, Any], ...] | None]:
    if feeds is None:
        return None, None
    if isinstance(feeds, (str, os.PathLike)):
        return os.fspath(feeds), None
    if isinstance(feeds, dict):
        return None, (feeds,)
    return None, tuple(feeds)
