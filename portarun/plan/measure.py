"""Measure the candidates on this machine: every target x precision x batch of one model.

For each precision the model is quantized once (portarun.quantize, calibrated on other
random feeds than the eval set) and compiled once per target; accuracy is measured once
per compiled model against the fp32 reference on the eval set, then each batch size is
timed. A candidate that fails to quantize, compile or run stays in the table with the
error as its reason. Cells run in this process (no worker isolation): a backend that
aborts the process aborts the plan.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .._sysinfo import cpu_count, cpu_name
from ..api import compile as compile_model
from ..api import load
from ..benchmark import reset_peak_memory
from ..cost import weight_bytes
from ..errors import InputError, PortarunError, first_line
from ..generate import DecoderSignature
from ..model import Model, quantization_of
from ..models import builtin_default_dims
from ..registry import get_backend, resolve_target
from ..types import Precision
from .accuracy import accuracy_of
from .candidates import Accuracy, Candidate, Source
from .evalset import DEFAULT_SAMPLES, EvalSet, random_eval
from .measure_decoder import decoder_accuracy, decoder_reference, measure_decoder, prompts
from .measure_encoder import batch_axis, measure_encoder

@dataclass
class MeasureConfig:
    model: str
    targets: list[str]
    precisions: list[str] | None = None  # None: fp32 + every quantized precision the backend declares
    batches: list[int] = field(default_factory=lambda: [1])
    dims: dict[str, int] = field(default_factory=dict)
    runs: int = 10
    warmup: int = 2
    eval_set: EvalSet | None = None  # None: random feeds
    eval_samples: int = DEFAULT_SAMPLES
    prompt_tokens: int = 16
    output_tokens: int = 16
    decode_reps: int = 3
    seed: int = 0
    reference: str = "onnxruntime:cpu"
    quantize_floor: str | None = None  # the quantizer's accuracy floor (None: its per-precision default)
    calibration: str | None = None  # .npz of calibration feeds (None: the eval set when given, else random)
    options: dict[str, Any] = field(default_factory=dict)  # backend compile options


def precisions_for(target: str, chosen: list[str] | None) -> list[str]:
    if chosen:
        return [Precision.parse(p).value for p in chosen]
    declared = get_backend(resolve_target(target).backend).precisions
    return ["fp32"] + [p.value for p in declared if p.is_quantized]


def here() -> Source:
    return Source("measured", f"{cpu_name()} ({cpu_count()} cores)",
                  _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def _is_decoder(model: Model) -> bool:
    names = {spec.name for spec in model.inputs}
    return "input_ids" in names and any(n.startswith("past_key_values.") for n in names)


class _Session:
    """The model, its reference outputs on the eval set, and quantized variants made once each."""

    def __init__(self, config: MeasureConfig):
        self.config = config
        self.model = load(config.model)
        self.decoder = _is_decoder(self.model)
        self.dims = {**builtin_default_dims(config.model), **config.dims}
        self.quantized: dict[str, tuple[Model, str]] = {}
        with compile_model(self.model, config.reference, "fp32") as ref:
            if self.decoder:
                sig = DecoderSignature.of(ref)
                if config.eval_set is not None and "input_ids" not in config.eval_set.feeds:
                    raise InputError(f"eval feeds {config.eval_set.source} have no 'input_ids' for the decoder "
                                     f"'{self.model.name}'", hint="save the prompts as input_ids [samples, tokens]")
                self.eval_ids = (config.eval_set.feeds["input_ids"] if config.eval_set is not None
                                 else prompts(sig, config.eval_samples, config.prompt_tokens, config.seed + 2))
                self.reference = decoder_reference(ref, self.eval_ids, config.output_tokens)
                self.eval_set = config.eval_set or EvalSet({"input_ids": self.eval_ids}, None, "random prompts")
            else:
                self.eval_set = config.eval_set or random_eval(self.model.inputs, samples=config.eval_samples,
                                                               seed=config.seed, dims=self.dims,
                                                               batch_axis=batch_axis(self.model.inputs))
                self.reference = ref.run(self.eval_set.feeds)

    def model_at(self, precision: str) -> tuple[Model, str]:
        """The model to compile at ``precision`` and a note on how it was made (quantized once, cached)."""
        if not Precision.parse(precision).is_quantized or quantization_of(self.model) is not None:
            return self.model, ""
        if precision not in self.quantized:
            from ..quantize import quantize

            # the quantizer's floor drives its per-layer fallback (each step a compile + eval: minutes on a
            # 100M decoder); the plan's --floor is the gate afterwards, on the plan's own eval set
            calibration, where = self._calibration()
            result = quantize(self.model, precision, dims=self.dims, seed=self.config.seed + 1,
                              accuracy_floor=self.config.quantize_floor, calibration=calibration)
            self.quantized[precision] = (result.model, f"quantized by portarun.quantize, calibrated on {where} "
                                         f"(floor {result.report.floor}: {'met' if result.floor_met else 'NOT met'})")
        return self.quantized[precision]

    def _calibration(self) -> tuple[Any, str]:
        """Calibration feeds: the user's file; else the user's eval set (real inputs, but calibrating on
        the samples the plan then scores flatters int8 a little, so it says so); else random feeds."""
        if self.config.calibration:
            return self.config.calibration, self.config.calibration
        if self.config.eval_set is not None and not self.decoder:
            return dict(self.config.eval_set.feeds), f"the eval set {self.config.eval_set.source} (also scored)"
        return None, f"random feeds (seed {self.config.seed + 1})"

    def accuracy(self, exe: Any) -> Accuracy:
        labels = self.eval_set.labels
        if self.decoder:
            return decoder_accuracy(exe, self.eval_ids, self.reference, self.config.output_tokens, labels)
        outputs = exe.run(self.eval_set.feeds)
        return accuracy_of(outputs, self.reference, labels=labels, samples=self.eval_set.samples)


def _measure_compiled(session: _Session, exe: Any, base: Candidate) -> list[Candidate]:
    """Accuracy once for the compiled model, then every batch size timed."""
    config = session.config
    base = replace(base, accuracy=session.accuracy(exe))
    try:
        if not session.decoder:
            given = config.eval_set.feeds if config.eval_set is not None else None
            return measure_encoder(exe, base, config.batches, dims=session.dims, runs=config.runs,
                                   warmup=config.warmup, seed=config.seed, eval_feeds=given)
        return [measure_decoder(exe, replace(base, batch=b, notes=list(base.notes)),
                                prompt_tokens=config.prompt_tokens, output_tokens=config.output_tokens,
                                reps=config.decode_reps, seed=config.seed) for b in config.batches]
    except PortarunError as exc:
        return [replace(base, batch=b, error=f"run failed: {first_line(exc)}") for b in config.batches]


def measure_candidates(config: MeasureConfig,
                       progress: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """Every (target, precision, batch) of ``config`` measured here; unpriced (see ``pricing.price``)."""
    session = _Session(config)
    kind = "decoder" if session.decoder else "encoder"
    candidates: list[Candidate] = []
    for target in config.targets:
        for precision in precisions_for(target, config.precisions):
            base = Candidate(target, precision, config.batches[0], model=session.model.name, kind=kind,
                             source=here())
            started = time.perf_counter()
            try:
                reset_peak_memory()
                model, note = session.model_at(precision)
                base.weight_bytes = weight_bytes(model)
                base.notes += [note] if note else []
                with compile_model(model, target, precision, **config.options) as exe:
                    cells = _measure_compiled(session, exe, base)
            except PortarunError as exc:
                base.error = first_line(exc)
                cells = [replace(base, batch=b, notes=list(base.notes)) for b in config.batches]
            for cell in cells:
                cell.notes.append(f"measured in {time.perf_counter() - started:.1f} s with its batch sweep")
                candidates.append(cell)
                if progress:
                    progress(cell)
    return candidates


__all__ = ["MeasureConfig", "measure_candidates", "precisions_for"]
