"""`portarun quantize`: float MODEL -> standard ONNX QDQ model, with the report."""

from __future__ import annotations

from typing import Any

import click

from ..errors import CheckFailedError
from ..progress import StageProgress, status
from ..types import Precision
from ._common import lazy, parse_dims
from .options import dims_option, emit_json_text, json_option, precision_option, seed_option

# what each stage of portarun.quantize's search is called on its progress bar
SEARCH_STAGES = {"calibrate": "calibrate activations", "reference": "float reference", "start": "measure the starting plan",
                 "rank": "rank layers", "search": "fallback steps", "undo": "undo unneeded steps",
                 "check": "judge and check the artifact"}

load = lazy(".api", "load")
RandomCalibration = lazy(".quantize", "RandomCalibration")
quantize_model = lazy(".quantize", "quantize")
check_on_targets = lazy(".quantize", "check_on_targets")
load_samples = lazy(".samples", "load_samples")


def data_options(function: Any) -> Any:
    """Where calibration and the held-out evaluation set come from (separately)."""
    options = [
        click.option("--calibration", "calibration_file", type=click.Path(), metavar="FILE.npz|DIR",
                     help="Calibration feeds: arrays keyed by input name, one sample per row of the batch dim; "
                          "or a folder of .npz samples."),
        click.option("--eval", "eval_file", type=click.Path(), metavar="FILE.npz|DIR",
                     help="Held-out feeds the accuracy floor is judged on (default: a quarter of the calibration "
                          "set, or further random samples)."),
        click.option("--calibration-random", "random_count", type=click.IntRange(min=1), metavar="N",
                     help="Use N seeded random samples instead (token ids stay inside the vocabulary). Default 8."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("quantize")
@click.argument("model")
@precision_option(required=True, precisions=[p for p in Precision if p.is_quantized],
                  help="int8: weights and activations (static); int8-weight / int4-weight: weights only.")
@data_options
@seed_option("Seed for random calibration samples.")
@dims_option("Size of a symbolic dim for random samples.")
@click.option("--method", default="minmax", show_default=True, type=click.Choice(["minmax", "percentile", "entropy"]),
              help="How int8 activation ranges are calibrated.")
@click.option("--block-size", default=128, show_default=True, type=click.Choice(["16", "32", "64", "128", "256"]),
              help="int4 block size along the reduction axis.")
@click.option("--symmetric/--asymmetric", default=True, show_default=True,
              help="int4: INT4 without zero points, or UINT4 with a zero point per block.")
@click.option("--accuracy-floor", "floor", metavar="METRIC=VALUE[,...]",
              help="e.g. cosine=0.99,top1=0.95,max_abs=0.1 (default cosine 0.999 / 0.995 / 0.98 for "
                   "int8-weight / int8 / int4-weight).")
@click.option("--exclude", multiple=True, metavar="OP_OR_NODE", help="Keep this op type or node in float (repeatable).")
@click.option("--evaluator", default="auto", show_default=True,
              help="Target that runs candidates while searching (auto: onnxruntime:cpu, else reference).")
@click.option("--allow-below-floor", is_flag=True, help="Write the model even when the floor cannot be met.")
@click.option("--check-targets", metavar="T1,T2", help="Compile the result on each of these targets before writing "
              "it; fail (nothing written) when one refuses it.")
@json_option("Also write the report as JSON to PATH ('-': stdout); --report is the older name.", "--report")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Quantized .onnx to write.")
def quantize(model: str, precision: str, calibration_file: str | None, eval_file: str | None,
             random_count: int | None, seed: int,
             dims: tuple[str, ...], method: str, block_size: str, symmetric: bool, floor: str | None,
             exclude: tuple[str, ...], evaluator: str, allow_below_floor: bool, check_targets: str | None,
             json_path: str | None, output: str) -> None:
    """Quantize MODEL (an .onnx file or builtin:NAME) to standard ONNX QDQ and write it to OUTPUT.

    The accuracy floor is measured on held-out samples against the float model;
    while it fails, the most sensitive layers move toward float (int4 -> int8 ->
    float). The report lists what was quantized, what stayed float and why.

    \b
    Examples:
      portarun quantize model.onnx -p int8 --calibration calib.npz -o model.int8.onnx
      portarun quantize model.onnx -p int8 --calibration calib/ --eval held-out.npz -o model.int8.onnx
      portarun quantize builtin:transformer -p int4-weight --block-size 64 -o tf.int4.onnx
      portarun quantize model.onnx -p int8-weight --accuracy-floor cosine=0.999 --exclude Gather -o m.w8.onnx
    """
    if calibration_file and random_count:
        raise click.UsageError("give either --calibration or --calibration-random, not both")
    parsed_dims = parse_dims(dims)
    calibration = calibration_file or (RandomCalibration(random_count, seed=seed, dims=parsed_dims)
                                       if random_count else None)
    with status(f"loading {model}"):  # a builtin decoder is built and validated first: seconds
        loaded = load(model)
    validation = load_samples(loaded, eval_file).samples if eval_file else None
    with StageProgress(SEARCH_STAGES, prefix=f"quantize {precision}: ") as bars:
        result = quantize_model(loaded, precision, calibration=calibration, validation=validation,
                                accuracy_floor=floor, method=method, block_size=int(block_size), symmetric=symmetric,
                                exclude=exclude, evaluator=evaluator, seed=seed, dims=parsed_dims, progress=bars)
    click.echo(result.summary())
    if json_path:
        emit_json_text(result.to_json(), json_path)
    _check_and_write(result, precision, check_targets, allow_below_floor, output)


def _check_and_write(result: Any, precision: str, check_targets: str | None, allow_below_floor: bool,
                     output: str) -> None:
    """Compile the result on --check-targets, hold the floor, then write OUTPUT (nothing when a check fails)."""
    if check_targets:
        failures = check_on_targets(result.model, precision, [t.strip() for t in check_targets.split(",") if t.strip()])
        if failures:
            raise CheckFailedError(f"the quantized model does not compile on {'; '.join(failures)}; nothing written",
                                   hint="--exclude the node it names, or choose another --block-size or precision")
        click.echo(f"compiles on {check_targets}")
    if not result.floor_met and not allow_below_floor:
        raise CheckFailedError("accuracy floor not met; nothing written",
                               hint="lower --accuracy-floor, choose a higher precision, --exclude sensitive ops, "
                                    "or pass --allow-below-floor")
    path = result.save(output)
    click.echo(f"wrote {path}")
