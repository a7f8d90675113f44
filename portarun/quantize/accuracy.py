"""The accuracy floor: what a quantized model must keep, measured against the float model.

Metrics are computed per validation sample and per output: cosine similarity
of the flattened output, top-1 agreement along the last axis (for score
vectors), and max / mean absolute error. The floor holds when the worst
sample meets every bound that is set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..types import Precision

AT_LEAST = ("cosine", "top1", "next_token", "exact_match")  # bounds that are minimums (the rest: maximums)
Z95 = 1.959964  # two-sided 95 % normal quantile

# The floors the issue asks for, per precision: quantization must keep at least this much.
DEFAULT_COSINE = {Precision.INT8_WEIGHT: 0.999, Precision.INT8: 0.995, Precision.INT4_WEIGHT: 0.98}


@dataclass(frozen=True)
class AccuracyFloor:
    """Bounds a quantized model must meet on every validation sample (None: not checked)."""

    cosine: float | None = None  # minimum cosine similarity per sample and output
    top1: float | None = None  # minimum fraction of argmax agreement (classifier outputs)
    max_abs: float | None = None  # maximum absolute error
    mean_abs: float | None = None  # maximum mean absolute error
    next_token: float | None = None  # decoders: minimum fraction of sequences whose next token (argmax at the
    #   last position of *logits*) equals the float model's
    exact_match: float | None = None  # minimum fraction of samples whose argmax equals the user's label

    @classmethod
    def parse(cls, value: "AccuracyFloor | str | dict | None", precision: Precision) -> "AccuracyFloor":
        """From ``"cosine=0.99,top1=0.95"``, a dict, or None (the precision's default cosine floor)."""
        if isinstance(value, AccuracyFloor):
            return value
        if value is None:
            return cls(cosine=DEFAULT_COSINE.get(precision, 0.99))
        if isinstance(value, str):
            items: dict[str, Any] = {}
            for part in filter(None, (p.strip() for p in value.replace(";", ",").split(","))):
                if "=" not in part:
                    raise UsageError(f"accuracy floor '{part}' is not NAME=VALUE",
                                     hint="e.g. cosine=0.99,top1=0.95,max_abs=0.1")
                key, number = part.split("=", 1)
                items[key.strip().replace("-", "_")] = number
            value = items
        value = {str(k).strip().replace("-", "_"): v for k, v in value.items()}
        known = {f for f in cls.__dataclass_fields__}
        unknown = [k for k in value if k not in known]
        if unknown:
            raise UsageError(f"unknown accuracy floor metric(s) {', '.join(unknown)}",
                             hint=f"use {', '.join(sorted(known))}")
        try:
            parsed = {k: float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise UsageError(f"accuracy floor values must be numbers, got {value}") from None
        for key in ("cosine", "top1", "next_token", "exact_match"):
            if key in parsed and not 0.0 <= parsed[key] <= 1.0:
                raise UsageError(f"accuracy floor {key}={parsed[key]} must lie in [0, 1]")
        return cls(**parsed)

    def text(self) -> str:
        parts = [f"{k}{'>=' if k in AT_LEAST else '<='}{v:g}" for k, v in asdict(self).items()
                 if v is not None]
        return ", ".join(parts) or "none"


COSINE_ROUNDING = 1e-12  # float64 cosines of equal vectors land within ~1e-16 of 1


def _digits(cosine: float) -> str:
    """Six decimals, or as many as it takes to show a cosine is below 1 (0.99999994, not 1.000000)."""
    text = f"{cosine:.6f}"
    return f"{cosine:.10g}" if text == "1.000000" and cosine < 1.0 - COSINE_ROUNDING else text


@dataclass
class Accuracy:
    """The quantized model's outputs vs the float model's, over the validation samples."""

    samples: int
    cosine_min: float
    cosine_mean: float
    top1: float | None
    max_abs: float
    mean_abs: float
    nmse: float  # mean over samples and outputs; the sensitivity ranking uses it
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    # the uncertainty of what was measured, so a floor passed on few samples reads as what it is
    cosine_interval: tuple[float, float] | None = None  # 95 % interval of the mean cosine over samples
    next_token: float | None = None  # decoders: fraction of sequences with the float model's next token
    next_token_interval: tuple[float, float] | None = None  # 95 % Wilson interval of that fraction
    exact_match: float | None = None  # fraction of samples whose argmax equals the user's label
    exact_match_interval: tuple[float, float] | None = None
    float_exact_match: float | None = None  # the float model on the same labels, for comparison

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        top1 = f", top-1 {self.top1:.4f}" if self.top1 is not None else ""
        ci = f" (95% CI {self.cosine_interval[0]:.6f}-{self.cosine_interval[1]:.6f})" if self.cosine_interval else ""
        extra = ""
        if self.next_token is not None:
            lo, hi = self.next_token_interval or (self.next_token, self.next_token)
            extra += f", next token {self.next_token:.3f} (95% CI {lo:.3f}-{hi:.3f})"
        if self.exact_match is not None:
            lo, hi = self.exact_match_interval or (self.exact_match, self.exact_match)
            was = f", float {self.float_exact_match:.3f}" if self.float_exact_match is not None else ""
            extra += f", exact match {self.exact_match:.3f} (95% CI {lo:.3f}-{hi:.3f}{was})"
        return (f"cosine min {_digits(self.cosine_min)} mean {_digits(self.cosine_mean)}{ci}{top1}{extra}, "
                f"max abs {self.max_abs:.4g}, mean abs {self.mean_abs:.4g} ({self.samples} samples)")


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at 0 or n successes, unlike the normal one)."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def mean_interval(values: list[float], z: float = Z95) -> tuple[float, float] | None:
    """Normal 95 % interval of a mean (None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))
    return mean - z * sem, mean + z * sem


def argmax_labels(outputs: list[dict[str, np.ndarray]], name: str | None = None) -> list[np.ndarray]:
    """Each sample's predicted labels: argmax over the last axis of output ``name`` (default the first)."""
    result = []
    for out in outputs:
        key = name if name is not None else next(iter(out))
        if key not in out:
            raise UsageError(f"label output '{key}' is not an output of the model", hint=f"use one of {', '.join(out)}")
        result.append(np.argmax(np.asarray(out[key]), axis=-1))
    return result


def exact_match(predicted: list[np.ndarray], labels: list[Any]) -> tuple[int, int]:
    """(samples whose every predicted label equals the given one, samples)."""
    if len(predicted) != len(labels):
        raise UsageError(f"{len(labels)} labels for {len(predicted)} evaluation samples",
                         hint="give one label (or array of labels) per evaluation sample")
    hits = 0
    for got, want in zip(predicted, labels):
        want = np.asarray(want)
        try:
            hits += bool(np.array_equal(np.broadcast_to(want, got.shape), got))
        except ValueError:
            raise UsageError(f"a label of shape {want.shape} does not fit the prediction's shape {got.shape}",
                             hint="labels are class indices: argmax of the label output's last axis") from None
    return hits, len(predicted)


class Reference:
    """The float model's outputs, prepared once for the many candidates measured against them: each float
    output flattened to float64 with its energy, and the argmaxes top-1 and next-token agreement compare
    with. ``measure`` prepares a plain list itself; the search passes one of these (a decoder-small
    candidate has 17 outputs x 32 samples: converting and reducing the reference each time cost as much
    as running the candidate)."""

    def __init__(self, expected: list[dict[str, np.ndarray]]):
        self.samples: list[list[tuple[str, np.ndarray, float, np.ndarray | None]]] = []
        self.next_tokens: list[list[tuple[str, np.ndarray]]] = []
        for want in expected:
            outputs, tokens = [], []
            for name, ref in want.items():
                ref_arr = np.asarray(ref)
                if "logit" in name.lower() and ref_arr.ndim == 3 and ref_arr.shape[-1] > 1:
                    tokens.append((name, np.argmax(ref_arr[:, -1], -1)))
                if ref_arr.dtype.kind != "f":  # labels, ZipMap's list of dicts: not measured here
                    continue
                ref64 = np.asarray(ref, np.float64).ravel()
                if ref64.size == 0:
                    continue
                # class scores: [batch, classes], or anything named like logits ([batch, seq, vocab])
                scores = ref_arr.shape and ref_arr.shape[-1] > 1 and (ref_arr.ndim == 2 or "logit" in name.lower())
                energy = _compare(ref64, ref64)[1]  # summed as the candidates' own norms are: equal outputs give 1
                outputs.append((name, ref64, energy, np.argmax(ref_arr, -1) if scores else None))
            self.samples.append(outputs)
            self.next_tokens.append(tokens)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: list[int]) -> "Reference":
        """The samples at ``indices``, in that order (already prepared)."""
        part = Reference([])
        part.samples, part.next_tokens = [self.samples[i] for i in indices], [self.next_tokens[i] for i in indices]
        return part


def _next_tokens(got: dict[str, np.ndarray], tokens: list[tuple[str, np.ndarray]]) -> tuple[int, int]:
    """(rows whose argmax at the last position matches, rows) over outputs named like logits [b, seq, vocab]."""
    hits = total = 0
    for name, want in tokens:
        hits += int(np.sum(np.argmax(np.asarray(got[name])[:, -1], -1) == want))
        total += want.shape[0]
    return hits, total


def _cosine_of(aa: float, bb: float, ab: float) -> float:
    """Cosine of two vectors from their dot products (a.a, b.b, a.b)."""
    na, nb = float(np.sqrt(aa)), float(np.sqrt(bb))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(ab / (na * nb))


CHUNK = 1 << 14  # elements per pass: float64 buffers that stay in cache


def _compare(out: np.ndarray, ref64: np.ndarray) -> tuple[float, float, float, float, float]:
    """(out.ref, out.out, |out-ref|^2, max |out-ref|, sum |out-ref|) in float64, a cache-sized chunk at a
    time: whole-array float64 temporaries of a decoder's logits (4 MB a sample, page-faulted afresh each
    time) made this 4x slower than running through small reused buffers."""
    n = ref64.size
    size = min(CHUNK, n)
    o, d = np.empty(size), np.empty(size)
    dot = own = squared = biggest = total = 0.0
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        oc, dc, rc = o[:stop - start], d[:stop - start], ref64[start:stop]
        oc[...] = out[start:stop]
        np.subtract(oc, rc, out=dc)
        np.abs(dc, out=dc)
        dot += float(np.einsum("i,i->", oc, rc))  # einsum: no BLAS thread pool to wake per chunk
        own += float(np.einsum("i,i->", oc, oc))
        squared += float(np.einsum("i,i->", dc, dc))
        biggest = max(biggest, float(dc.max()))
        total += float(dc.sum())
    return dot, own, squared, biggest, total


def measure(actual: list[dict[str, np.ndarray]], expected: "list[dict[str, np.ndarray]] | Reference",
            floor: AccuracyFloor, *, labels: list[Any] | None = None, label_output: str | None = None,
            float_exact_match: float | None = None, sample_cosines: list[float] | None = None) -> Accuracy:
    """Compare per sample and output; ``passed`` says whether ``floor`` holds. ``labels`` (one per sample:
    class indices for the argmax of ``label_output``, default the first output) adds exact match.
    ``expected``: the float outputs, or a ``Reference`` prepared from them once. ``sample_cosines``, when
    given, receives each sample's lowest cosine over its outputs (which samples are the worst)."""
    reference = expected if isinstance(expected, Reference) else Reference(expected)
    cosines, top1s, max_abs, mean_abs, nmses = [], [], 0.0, [], []
    next_hits = next_total = 0
    for got, outputs, tokens in zip(actual, reference.samples, reference.next_tokens):
        hits, total = _next_tokens(got, tokens)
        next_hits, next_total = next_hits + hits, next_total + total
        sample_start = len(cosines)
        for name, ref64, energy, ref_top in outputs:
            dot, own, squared, biggest, total = _compare(np.asarray(got[name]).ravel(), ref64)
            cosines.append(_cosine_of(own, energy, dot))
            max_abs = max(max_abs, biggest)
            mean_abs.append(total / ref64.size)
            nmses.append(squared / energy if energy > 0 else float(biggest > 0))
            if ref_top is not None:
                top1s.append(float(np.mean(np.argmax(np.asarray(got[name]), -1) == ref_top)))
        if sample_cosines is not None:
            sample_cosines.append(min(cosines[sample_start:], default=1.0))
    if not cosines:
        raise UsageError("the model has no float outputs to measure accuracy on")
    acc = Accuracy(samples=len(reference), cosine_min=min(cosines), cosine_mean=float(np.mean(cosines)),
                   top1=min(top1s) if top1s else None, max_abs=max_abs, mean_abs=float(np.mean(mean_abs)),
                   nmse=float(np.mean(nmses)), cosine_interval=mean_interval(cosines))
    if next_total:
        acc.next_token = next_hits / next_total
        acc.next_token_interval = wilson_interval(next_hits, next_total)
    if labels is not None:
        hits, total = exact_match(argmax_labels(actual, label_output), labels)
        acc.exact_match, acc.exact_match_interval = hits / total, wilson_interval(hits, total)
        acc.float_exact_match = float_exact_match
    for key, value, what in (("next_token", acc.next_token, "a decoder output named *logits* [batch, seq, vocab]"),
                             ("exact_match", acc.exact_match, "labels for the evaluation samples")):
        bound = getattr(floor, key)
        if bound is None:
            continue
        if value is None:
            raise UsageError(f"a {key} floor needs {what}")
        if value < bound:
            acc.failures.append(f"{key.replace('_', ' ')} {value:.4f} < {bound:g}")
    # float64 rounding puts the cosine of identical outputs a few ulps off 1: a floor of 1 holds there
    if floor.cosine is not None and acc.cosine_min < floor.cosine - COSINE_ROUNDING:
        acc.failures.append(f"cosine {acc.cosine_min:.10g} < {floor.cosine:g}")  # digits enough to see the gap
    if floor.top1 is not None:
        if acc.top1 is None:
            raise UsageError("a top-1 floor needs an output of class scores ([batch, classes] or named *logits*)")
        if acc.top1 < floor.top1:
            acc.failures.append(f"top-1 {acc.top1:.4f} < {floor.top1:g}")
    if floor.max_abs is not None and acc.max_abs > floor.max_abs:
        acc.failures.append(f"max abs {acc.max_abs:.4g} > {floor.max_abs:g}")
    if floor.mean_abs is not None and acc.mean_abs > floor.mean_abs:
        acc.failures.append(f"mean abs {acc.mean_abs:.4g} > {floor.mean_abs:g}")
    acc.passed = not acc.failures
    return acc
