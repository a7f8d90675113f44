"""``quantize``: float model -> standard QDQ model that meets an accuracy floor, or says it cannot.

1. Find the weight-carrying nodes (MatMul, Gemm, Conv, embedding Gather) and
   start every one at the requested level; ``exclude`` keeps nodes or op types float.
2. For static int8, calibrate the activation inputs of those nodes. Only the
   inputs of weight-carrying nodes get QDQ pairs: residual Adds, LayerNorm and
   Softmax inputs stay float (quantizing them wrecks small transformers, DESIGN §5).
3. Build, run the held-out samples, compare with the float model. While the floor
   fails, rank the quantized nodes by sensitivity (each quantized alone; error
   vs float, per byte the next step up adds) and move the top one step toward float
   (int4 -> int8 -> float; int8+activation -> int8 weight -> float), re-measuring
   after each step and re-ranking when every ranked node has moved once. Once the floor
   holds, moves that turn out unnecessary are undone (oldest first) (search.py).
4. Every candidate plan runs on one float session compiled once (swap.py: weights fed, activation
   QDQ switched by fed flags), is judged worst samples first and stops when they already fail
   (judge.py); the chosen plan is then built and judged as the evaluator runs the artifact, and the
   search goes on on built artifacts should the two ever disagree.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable, Iterable

import numpy as np
import onnx

from ..errors import CheckFailedError, ModelError, ModelValidationError, PortarunError, UsageError, first_line
from ..loading import load
from ..model import Model, constant_weights_as_initializers, quantization_of
from ..types import Precision
from .accuracy import Accuracy, AccuracyFloor, argmax_labels, exact_match, measure
from .calibration import METHODS, RandomCalibration, RangeCollector, load_samples, split_holdout
from .evaluator import Evaluator, with_outputs
from .report import NodeDecision, QuantizationReport, QuantizedModel
from .rewrite import (DEMOTE, Options, Target, build, find_targets, needed_opset,
                      portable_block_size, upgrade_opset)
from .judge import Judge
from .search import search
from .swap import WeightSwapSession, run_samples

START_LEVEL = {Precision.INT4_WEIGHT: "int4", Precision.INT8_WEIGHT: "int8", Precision.INT8: "int8+act"}
BLOCK_SIZES = (16, 32, 64, 128, 256)
DEFAULT_RANDOM_SAMPLES = 16
# Random calibration gets this many *other* random samples (later seeds) to judge the floor on, by the
# worst one: with 2 held-out samples, mlp int8 claimed cosine 0.9998 and then gave 0.978 on a fresh feed.
RANDOM_VALIDATION_SAMPLES = 16
# A decoder is judged on what its user sees, the next token, over at least this many held-out prompts
# (a proportion from 16 has a 95 % interval about +-0.2 wide; from 32 about +-0.15)
DECODER_VALIDATION_SAMPLES = 32
RANK_SAMPLES = 8  # validation samples used to rank layer sensitivity (the floor itself uses all)


def _builtin_dims(model: Model) -> dict[str, int]:
    from ..models import default_dims_of

    return default_dims_of(model)


def _describe(source: Any, count: int) -> str:
    if isinstance(source, RandomCalibration):
        return f"{count} random samples (seed {source.seed})"
    if isinstance(source, (str, os.PathLike)):
        return f"{count} samples from {os.fspath(source)}"
    return f"{count} samples given"


def _excluded(target: Target, exclude: Iterable[str]) -> bool:
    return any(item in (target.node, target.op, target.weight) for item in exclude)


def quantize(model: "Model | onnx.ModelProto | str | os.PathLike", precision: "Precision | str" = "int8", *,
             calibration: Any = None, validation: Any = None,
             accuracy_floor: "AccuracyFloor | str | dict | None" = None, method: str = "minmax",
             block_size: int = 128, symmetric: bool = True, exclude: Iterable[str] = (),
             evaluator: str = "auto", seed: int = 0, dims: dict[str, int] | None = None,
             strict: bool = False, eval: Any = None, labels: Any = None,
             label_output: str | None = None, portable: bool = True,
             progress: "Callable[[str, int, int], None] | None" = None) -> QuantizedModel:
    """Quantize ``model`` to ``precision`` (``int8``, ``int8-weight`` or ``int4-weight``).

    ``calibration``: an .npz path, ``RandomCalibration(n, seed=...)``, a dict of arrays, or an
    iterable of feed dicts; default ``RandomCalibration(16, seed=seed)``. Unless ``validation`` is
    given, random calibration is validated on 16 further random samples (the seeds after it), and
    other data holds out a quarter of itself (at least 8, or half of a small set). ``accuracy_floor``: ``"cosine=0.99,top1=0.95"``
    or an ``AccuracyFloor``; default cosine 0.999 / 0.995 / 0.98 for int8-weight / int8 / int4-weight.
    ``strict`` raises ``CheckFailedError`` when the floor cannot be met instead of reporting it.
    ``eval``: the user's evaluation set (same forms as ``calibration``), on which the floor is judged
    instead of held-out samples; ``labels``: one label per evaluation sample (class indices compared with
    the argmax of ``label_output``, default the first output) for an ``exact_match`` floor, the task
    metric. Decoders (an output named *logits* [batch, seq, vocab]) are judged on 32 held-out random
    prompts by default, and the report gives next-token agreement with its 95 % interval.
    ``portable`` (default) keeps int8 any layer whose int4 blocks cannot tile its reduction dim (a layout
    OpenVINO refuses); ``portable=False`` writes the short last block the ONNX spec allows (ORT runs it).
    ``progress(stage, done, total)`` is called as the search advances (stages: calibrate (static int8),
    reference, start (the starting plan measured), rank, search, undo, check), for a progress bar
    (``portarun.progress.StageProgress``); done == total ends a stage.
    """
    def tell(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    loaded = load(model)
    precision = Precision.parse(precision)
    if not precision.is_quantized:
        raise UsageError(f"'{precision}' is not a quantized precision",
                         hint="choose int8, int8-weight or int4-weight")
    carried = quantization_of(loaded)
    if carried is not None:
        raise ModelError(f"model '{loaded.name}' is already quantized ({carried}); portarun quantizes float models",
                         hint=f"compile it as is with -p {carried}, or quantize the float original")
    if method not in METHODS:
        raise UsageError(f"unknown calibration method '{method}'", hint=f"choose one of {', '.join(METHODS)}")
    if precision is Precision.INT4_WEIGHT and block_size not in BLOCK_SIZES:
        raise UsageError(f"int4 block size {block_size} is not supported",
                         hint=f"choose one of {', '.join(map(str, BLOCK_SIZES))} (32-128 is typical)")
    floor = AccuracyFloor.parse(accuracy_floor, precision)
    exclude = tuple(exclude)

    dims = {**_builtin_dims(loaded), **(dims or {})}
    source = calibration if calibration is not None else RandomCalibration(DEFAULT_RANDOM_SAMPLES, seed=seed, dims=dims)
    if isinstance(source, RandomCalibration) and not source.dims:
        source.dims = dims
    samples = load_samples(loaded, source)
    if eval is not None:
        if validation is not None:
            raise UsageError("give the evaluation set as eval= or validation=, not both")
        validation = eval
    if labels is not None and validation is None:
        raise UsageError("labels need the evaluation samples they belong to", hint="pass eval= with labels=")
    if validation is not None:
        calib, valid, held_out = samples, load_samples(loaded, validation), True
        validation_text = f"{len(valid)} validation samples given"
    elif isinstance(source, RandomCalibration):
        count = DECODER_VALIDATION_SAMPLES if _is_decoder(loaded) else RANDOM_VALIDATION_SAMPLES
        fresh = RandomCalibration(count, seed=source.seed, dims=source.dims)
        calib, valid, held_out = samples, fresh.samples(loaded, offset=source.count), True
        validation_text = (f"{len(valid)} other random samples (seeds {source.seed + source.count}-"
                           f"{source.seed + source.count + len(valid) - 1}), none used for calibration")
    else:
        calib, valid, held_out = split_holdout(samples)
        validation_text = (f"{len(valid)} held-out samples" if held_out
                           else f"the {len(valid)} calibration sample(s) (too few to hold any out)")
    runner = Evaluator(evaluator)

    promoted = constant_weights_as_initializers(loaded.proto)
    if promoted is not None:  # weights in Constant nodes (paddle2onnx) are weights too
        loaded = Model.from_proto(promoted, name=loaded.name, check=False)
    targets = find_targets(loaded.proto)
    if not targets:
        return _unchanged(loaded, precision, floor, _describe(source, len(samples)), runner.target)
    start = START_LEVEL[precision]
    levels: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for t in targets:
        if _excluded(t, exclude):
            levels[t.node], reasons[t.node] = "float", "excluded by request"
        elif start == "int8+act" and t.activation is None:
            levels[t.node] = "int8"
            reasons[t.node] = "no float activation input to quantize (weight-only)"
        else:
            levels[t.node] = start
    for t, why in _unportable_int4(loaded.proto, targets, levels, block_size) if portable else ():
        levels[t.node], reasons[t.node] = "int8", why
    unknown = [e for e in exclude if not any(e in (t.node, t.op, t.weight) for t in targets)]
    if unknown:
        names = sorted({t.node for t in targets} | {t.op for t in targets})
        raise UsageError(f"--exclude {', '.join(unknown)} matches no quantizable node or op type",
                         hint=f"quantizable: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")

    base = upgrade_opset(loaded.proto, needed_opset(levels))
    if base is not loaded.proto:
        # the version converter may insert nodes (e.g. a Constant for ReduceMean's axes at opset 18),
        # so the targets are found again in the converted graph; the plan carries over by name
        targets = _retarget(targets, find_targets(base))
    opts = Options(block_size=block_size, symmetric=symmetric)
    if start == "int8+act":
        tell("calibrate", 0, 1)
        opts.act_ranges = _calibrate(base, [t for t in targets if levels[t.node] == "int8+act"], calib, runner,
                                     method)
        tell("calibrate", 1, 1)

    output_names = [o.name for o in loaded.outputs]
    # every plan runs on one float session: weights fed, activation QDQ switched by fed flags (swap.py)
    tell("reference", 0, 1)
    session = WeightSwapSession(base, targets, runner, output_names, opts)
    try:
        probed = [{**sample, **result} for sample, result in
                  zip(valid[:RANK_SAMPLES], session.run({}, valid[:RANK_SAMPLES], probes=True))]
        reference = [{name: r[name] for name in output_names} for r in probed] + \
            session.run({}, valid[RANK_SAMPLES:])
        tell("reference", 1, 1)

        label_list = _labels(labels, len(valid))
        float_match = None
        if label_list is not None:
            hits, total = exact_match(argmax_labels(reference, label_output), label_list)
            float_match = hits / total
        judging = dict(labels=label_list, label_output=label_output, float_exact_match=float_match)
        evaluate = Judge(session.run, valid, reference, floor, **judging)

        def local_errors(trial: dict[str, str]) -> dict[str, float] | None:
            """Each quantized node's own output error on its real inputs, or None unless all are computable."""
            errors: dict[str, float | None] = {}
            for done, t in enumerate(targets):
                if trial[t.node] != "float":
                    errors[t.node] = session.local_error(t, trial[t.node], probed)
                    if errors[t.node] is None:
                        return None  # the ranking runs each node quantized alone instead
                tell("rank", done + 1, len(targets))
            return errors  # type: ignore[return-value]

        sizes = {t.name: int(np.prod(t.dims)) for t in base.graph.initializer}
        steps: list[str] = []

        def rank(plan: dict[str, str], judge=evaluate) -> list[str]:
            return _rank(targets, plan, judge, sizes, local_errors(plan), tell)

        accuracy = search(levels, reasons, start, evaluate, rank, tell, steps)
        stack = bool(session.stack)
    finally:
        session.close()
    # the search judged fed weights; the report judges the artifact itself, as the evaluator runs it

    def run_artifact(artifact: onnx.ModelProto, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        with runner.compile(artifact) as executable:
            return run_samples(executable, samples, output_names, stack=stack)

    def run_built(plan: dict[str, str], samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return run_artifact(build(base, targets, plan, opts), samples)

    def judge_artifact() -> tuple[onnx.ModelProto, Accuracy]:
        built = build(base, targets, levels, opts)  # built once: judged here, then checked and returned
        return built, evaluate.measure(run_artifact(built, valid))

    tell("check", 0, 1)
    final, artifact = judge_artifact()
    if accuracy.passed and not artifact.passed:
        # the evaluator computes the artifact differently from the float session (integer kernels for
        # static int8): go on searching on built artifacts from here, so the report's claim holds
        on_artifacts = Judge(run_built, valid, reference, floor, **judging)
        steps.append(f"the artifact itself measured {artifact.text()}: searching on built artifacts")
        accuracy = search(levels, reasons, start, on_artifacts, lambda plan: rank(plan, on_artifacts), tell, steps)
        final, artifact = judge_artifact()
    accuracy = artifact
    all_float = all(level == "float" for level in levels.values())
    floor_met = accuracy.passed and not all_float
    if all_float and targets:
        accuracy.failures.append(_all_float_reason(accuracy, floor, float_match, reference))
    weight_dims = {t.name: list(t.dims) for t in base.graph.initializer}
    sizes_by_axis = {t.node: weight_dims[t.weight][t.block_axis] for t in targets}
    final.graph.name = loaded.proto.graph.name
    _full_check(final, loaded.name)
    tell("check", 1, 1)
    quantized = Model.from_proto(final, name=loaded.name, check=False)
    report = QuantizationReport(
        precision=precision.value, floor=floor.text(), floor_met=floor_met,
        calibration=_describe(source, len(samples)),
        calibration_method=method if start == "int8+act" else "weights only (no activation ranges)",
        validation=validation_text,
        evaluator=runner.target,
        weight_bytes_before=loaded.stats().parameter_bytes, weight_bytes_after=quantized.stats().parameter_bytes,
        accuracy=accuracy,
        nodes=[NodeDecision(t.node, t.op, t.weight, levels[t.node], reasons.get(t.node, ""),
                            portable_block_size(sizes_by_axis[t.node], block_size, t.op) if levels[t.node] == "int4"
                            else None) for t in targets],
        fallback_steps=steps, opset=quantized.opset,
        block_size=block_size if precision is Precision.INT4_WEIGHT else None, symmetric=symmetric,
    )
    if strict and not floor_met:
        raise CheckFailedError(f"quantizing '{loaded.name}' to {precision} cannot meet the accuracy floor "
                               f"({floor.text()}): {'; '.join(accuracy.failures)}",
                               hint="lower the floor, use a higher precision, or give representative calibration data")
    return QuantizedModel(quantized, precision, report)


def _unportable_int4(proto: onnx.ModelProto, targets: list[Target], levels: dict[str, str],
                     block_size: int) -> list[tuple[Target, str]]:
    """int4 targets whose blocked layout an in-tree backend refuses, each with the reason it stays int8.

    A portable int4 weight has whole blocks along its reduction axis: OpenVINO's ONNX frontend refuses
    a short last block (depthwise convolutions have 1 input channel per group; odd reduction dims), so
    such a layer is written int8 rather than as an artifact some backend cannot read."""
    dims = {t.name: list(t.dims) for t in proto.graph.initializer}
    found = []
    for t in targets:
        if levels.get(t.node) != "int4":
            continue
        length = dims[t.weight][t.block_axis]
        block = portable_block_size(length, block_size, t.op)
        if length % block:
            found.append((t, f"int4 not portable: no block size of 16-{block_size} divides its reduction dim "
                             f"{length} (OpenVINO refuses a short last block); kept int8"))
    return found


def check_on_targets(model: Model, precision: Precision | str, targets: Iterable[str]) -> list[str]:
    """Compile ``model`` at ``precision`` on each target; the lines 'TARGET: reason' of those that refuse it.

    ``portarun quantize --check-targets`` runs this before writing, so an artifact that some backend
    the user named cannot read fails early and says which and why."""
    from ..registry import get_backend, resolve_target

    failures = []
    for text in targets:
        try:
            target = resolve_target(text)
            get_backend(target.backend).compile(model, target, Precision.parse(precision)).close()
        except PortarunError as exc:
            failures.append(f"{text}: {exc}")
    return failures


def _is_decoder(model: Model) -> bool:
    """A model whose user reads next tokens: an output named like logits with three dims [batch, seq, vocab]."""
    return any("logit" in spec.name.lower() and spec.shape is not None and len(spec.shape) == 3
               for spec in model.outputs)


def _all_float_reason(accuracy: Accuracy, floor: AccuracyFloor, float_match: float | None,
                      reference: list[dict[str, np.ndarray]]) -> str:
    """Why a search that ended with every node float failed: the nodes were too sensitive, or the floor
    cannot be met even by the float model on these samples (then no quantization can meet it)."""
    if accuracy.passed:
        return "every quantizable node had to stay float"
    if floor.exact_match is not None and float_match is not None and float_match < floor.exact_match:
        return (f"the float model itself scores exact_match {float_match:.3f} on these labels, below the floor "
                f"{floor.exact_match:g}: no quantization can meet it (check the labels, or lower the floor)")
    magnitude = float(np.mean([np.mean(np.abs(np.asarray(v, dtype=np.float64))) for out in reference
                               for v in out.values() if np.asarray(v).dtype.kind == "f"] or [0.0]))
    return (f"even with every node float the evaluator does not meet the floor on these samples (mean |output| "
            f"{magnitude:.3g}: at that scale rounding noise decides relative metrics such as cosine); judge on real "
            "samples (--calibration / --eval) or with an absolute bound (max_abs=, mean_abs=)")


def _labels(labels: Any, count: int) -> list[Any] | None:
    """One label entry per evaluation sample, from a list or an array with one row per sample."""
    if labels is None:
        return None
    if isinstance(labels, np.ndarray) and labels.ndim >= 1 or isinstance(labels, (list, tuple)):
        items = list(labels)
    else:
        raise UsageError(f"labels must be a list or array with one entry per evaluation sample, got "
                         f"{type(labels).__name__}")
    if len(items) != count:
        raise UsageError(f"{len(items)} labels for {count} evaluation samples",
                         hint="give one label (or array of labels) per evaluation sample")
    return items


def _unchanged(model: Model, precision: Precision, floor: AccuracyFloor, calibration: str,
               evaluator: str) -> QuantizedModel:
    """The answer for a model with no weight-carrying node: itself, saying so (no floor failure claimed)."""
    same = Accuracy(samples=0, cosine_min=1.0, cosine_mean=1.0, top1=None, max_abs=0.0, mean_abs=0.0, nmse=0.0)
    size = model.stats().parameter_bytes
    report = QuantizationReport(
        precision=precision.value, floor=floor.text(), floor_met=True, calibration=calibration,
        calibration_method="none (nothing to quantize)", validation="none (nothing to quantize)",
        evaluator=evaluator, weight_bytes_before=size, weight_bytes_after=size, accuracy=same,
        opset=model.opset, nothing_to_quantize=True)
    return QuantizedModel(model, precision, report)


def _retarget(old: list[Target], new: list[Target]) -> list[Target]:
    """``new`` targets (found in the converted graph) under the names of the ``old`` ones.

    Matched by the node's first output, which conversion keeps; unnamed nodes are named by position,
    which conversion may shift, so the names the user saw (and excluded) are kept."""
    by_output = {t.output: t for t in old}
    unmatched = [t.node for t in new if t.output not in by_output]
    if unmatched or len(new) != len(old):
        raise ModelError(f"converting to a newer opset changed the quantizable nodes "
                         f"({', '.join(unmatched[:5]) or f'{len(old)} -> {len(new)}'})",
                         hint="re-export the model at opset 21 and quantize that")
    return [replace(t, node=by_output[t.output].node) for t in new]


def _calibrate(base: onnx.ModelProto, targets: list[Target], samples: list[dict[str, np.ndarray]],
               runner: Evaluator, method: str) -> dict[str, tuple[float, float]]:
    """Float range of each activation input of ``targets`` over the calibration samples."""
    tensors = sorted({t.activation for t in targets if t.activation is not None})
    if not tensors:
        return {}
    feeds_names = {i.name for i in base.graph.input}
    computed = [name for name in tensors if name not in feeds_names]
    collectors = {name: RangeCollector(method) for name in tensors}
    results = runner.run(with_outputs(base, computed), samples, outputs=computed) if computed else [{}] * len(samples)
    for sample, result in zip(samples, results):
        for name in tensors:
            collectors[name].add(sample[name] if name in feeds_names else result[name])
    return {name: collector.range() for name, collector in collectors.items()}


# bits per weight at each level; moving a node up the ladder costs its element count times the difference
_BITS = {"int4": 4, "int8": 8, "int8+act": 8, "float": 32}


def _rank(targets: list[Target], levels: dict[str, str], evaluate, sizes: dict[str, int],
          local: dict[str, float] | None = None, tell=lambda stage, done, total: None) -> list[str]:
    """Quantized nodes in the order to move them toward float: error removed per byte added first.

    Each node is quantized alone (everything else float); its NMSE vs the float model is the error
    its quantization causes. Dividing by the bytes the next step up would add (a greedy knapsack)
    keeps a large, mildly sensitive embedding table at low precision while small sensitive layers
    move up; int8+activation -> int8 weight adds no bytes, so those go by error alone. ``local`` (each
    node's own relative output error, from the float activations it really sees) replaces the
    quantized-alone runs when every node has one: same ordering idea, no model run per node.
    """
    scores = []
    for ranked, t in enumerate(targets):
        if local is None:  # local errors told their own progress as they were computed
            tell("rank", ranked + 1, len(targets))
        level = levels[t.node]
        if level == "float":
            continue
        if local is not None:
            nmse = local[t.node]
        else:
            alone = {other.node: "float" for other in targets}
            alone[t.node] = level
            nmse = evaluate(alone, RANK_SAMPLES).nmse  # a ranking needs fewer samples than the floor check
        added_bytes = max(sizes[t.weight] * (_BITS[DEMOTE[level]] - _BITS[level]) / 8, 1.0)
        scores.append((-nmse / added_bytes, t.index, t.node))
    return [node for _, _, node in sorted(scores)]


def _full_check(proto: onnx.ModelProto, name: str) -> None:
    """onnx.checker with strict shape inference. A contradiction only with the *declared* output
    shapes (real exporters write wrong ones; quantizing can make the inferred shape exact) passes, as
    it does when a model is loaded (``Model._infer_shapes_strictly``)."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.shape_inference.InferenceError as exc:
        try:
            Model.from_proto(proto, name=name)  # strict, except for the declared output shapes
        except ModelValidationError:
            raise ModelError(f"the quantized '{name}' fails onnx.checker: {first_line(exc)}",
                             hint="please report this; quantize with --exclude on the node it names meanwhile") from None
    except onnx.checker.ValidationError as exc:  # a bug in the rewrite
        raise ModelError(f"the quantized '{name}' fails onnx.checker: {first_line(exc)}",
                         hint="please report this; quantize with --exclude on the node it names meanwhile") from None
