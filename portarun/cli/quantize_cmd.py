"""`portarun quantize`: float MODEL -> standard ONNX QDQ model, with the report."""

from __future__ import annotations

import click

from ..errors import CheckFailedError
from ..progress import status
from ..types import Precision
from ._common import lazy, parse_dims
from .options import dims_option, emit_json_text, json_option, precision_option, seed_option

load = lazy(".api", "load")
RandomCalibration = lazy(".quantize", "RandomCalibration")
quantize_model = lazy(".quantize", "quantize")


@click.command("quantize")
@click.argument("model")
@precision_option(required=True, precisions=[p for p in Precision if p.is_quantized],
                  help="int8: weights and activations (static); int8-weight / int4-weight: weights only.")
@click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False), metavar="FILE.npz",
              help="Calibration feeds: arrays keyed by input name, one sample per row of the batch dim.")
@click.option("--calibration-random", "random_count", type=click.IntRange(min=1), metavar="N",
              help="Use N seeded random samples instead (token ids stay inside the vocabulary). Default 8.")
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
@json_option("Also write the report as JSON to PATH ('-': stdout); --report is the older name.", "--report")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Quantized .onnx to write.")
def quantize(model: str, precision: str, calibration_file: str | None, random_count: int | None, seed: int,
             dims: tuple[str, ...], method: str, block_size: str, symmetric: bool, floor: str | None,
             exclude: tuple[str, ...], evaluator: str, allow_below_floor: bool, json_path: str | None,
             output: str) -> None:
    """Quantize MODEL (an .onnx file or builtin:NAME) to standard ONNX QDQ and write it to OUTPUT.

    The accuracy floor is measured on held-out samples against the float model;
    while it fails, the most sensitive layers move toward float (int4 -> int8 ->
    float). The report lists what was quantized, what stayed float and why.

    \b
    Examples:
      portarun quantize model.onnx -p int8 --calibration calib.npz -o model.int8.onnx
      portarun quantize builtin:transformer -p int4-weight --block-size 64 -o tf.int4.onnx
      portarun quantize model.onnx -p int8-weight --accuracy-floor cosine=0.999 --exclude Gather -o m.w8.onnx
    """
    if calibration_file and random_count:
        raise click.UsageError("give either --calibration or --calibration-random, not both")
    parsed_dims = parse_dims(dims)
    calibration = calibration_file or (RandomCalibration(random_count, seed=seed, dims=parsed_dims)
                                       if random_count else None)
    with status(f"quantizing {model} to {precision} (accuracy floor: per-layer fallback)"):
        result = quantize_model(load(model), precision, calibration=calibration, accuracy_floor=floor,
                                method=method, block_size=int(block_size), symmetric=symmetric, exclude=exclude,
                                evaluator=evaluator, seed=seed, dims=parsed_dims)
    click.echo(result.summary())
    if json_path:
        emit_json_text(result.to_json(), json_path)
    if not result.floor_met and not allow_below_floor:
        raise CheckFailedError("accuracy floor not met; nothing written",
                               hint="lower --accuracy-floor, choose a higher precision, --exclude sensitive ops, "
                                    "or pass --allow-below-floor")
    path = result.save(output)
    click.echo(f"wrote {path}")
