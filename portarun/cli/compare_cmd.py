"""`portarun compare`: run one model on two targets with the same feeds and compare the outputs;
with --localize, bisect to the first node whose output leaves tolerance. The work is
``portarun_conformance.compare_targets`` (through ``cli/suite.py``); this module parses and prints."""

from __future__ import annotations

from typing import Any

import click

from . import suite
from .feed_options import feed_source_options, feeds_from_options
from ._common import EXIT_FAILED, parse_dims, table
from .options import (dims_option, emit_json, isolate_option, json_option, precision_option,
                      seed_option, target_option, timeout_option)


@click.command("compare")
@click.argument("model")
@target_option(multiple=True, required=True,
               help="Two targets: the first is the expected side, the second is checked against it. "
                    "One target is checked against reference:cpu.")
@precision_option(help="Precision of the checked target (the expected side runs the model as written).")
@click.option("--localize", is_flag=True, help="Bisect to the first divergent node (onnx.utils.Extractor subgraphs).")
@click.option("--rtol", type=float, help="Override the precision's relative tolerance.")
@click.option("--atol", type=float, help="Override the precision's absolute tolerance.")
@dims_option()
@seed_option()
@feed_source_options
@json_option("Write the comparison as JSON to PATH ('-': stdout).")
@isolate_option()
@timeout_option()
@click.pass_context
def compare(ctx: click.Context, model: str, targets: tuple[str, ...], precision: str | None, localize: bool,
            rtol: float | None, atol: float | None, dims: tuple[str, ...], seed: int, json_path: str | None,
            isolate: bool, timeout: float | None, **feed_values: Any) -> None:
    """Compare MODEL's outputs on two targets: max abs/rel error, NMSE, cosine, % within tolerance,
    top-1 agreement. Exits 1 when they differ beyond the tolerance of the precision.

    Feeds are your data (--inputs, --input, --text) or seeded random feeds that respect the graph
    (token ids inside their embedding table, 0/1 masks); every sample is compared, the worst reported.

    \b
    Examples:
      portarun compare builtin:transformer -t onnxruntime:cpu -t openvino:cpu
      portarun compare model.onnx -t reference:cpu -t xla:cpu --localize
      portarun compare minilm.onnx -t onnxruntime:cpu -t xla:cpu --inputs feeds.npz
      portarun compare minilm.onnx -t onnxruntime:cpu -t openvino:cpu --text "Hello." --tokenizer DIR
    """
    from ..api import load
    from ..models import builtin_default_dims

    if len(targets) > 2:
        raise click.BadParameter("give one or two targets", param_hint="-t")
    expected_target, actual_target = (("reference:cpu",) + targets)[-2:]
    feeds = feeds_from_options(load(model), feed_values, dims=parse_dims(dims), seed=seed,
                               default_dims=builtin_default_dims(model), quiet=json_path == "-")
    result = suite.conformance().compare_targets(model, actual_target, precision, expected_target=expected_target,
                                                 rtol=rtol, atol=atol, localize=localize, feeds=feeds, isolate=isolate,
                                                 timeout=timeout)
    if not emit_json(result.to_dict(), json_path):
        print_comparison(result)
    if not result:
        ctx.exit(EXIT_FAILED)


def print_comparison(result: Any) -> None:
    tolerance, actual, expected = result.tolerance, result.actual, result.expected
    click.echo(f"{result.case}: {actual['target']} ({actual['precision']}) vs "
               f"{expected['target']} ({expected['precision']}); tolerance "
               f"rtol={tolerance.rtol:g} atol={tolerance.atol:g}"
               + (f" min_cosine={tolerance.min_cosine}" if tolerance.min_cosine is not None else ""))
    rows = [[o.name, "PASS" if o.passed else "FAIL", f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", f"{o.nmse:.3g}",
             f"{o.cosine:.6f}", f"{o.within:.2%}", "-" if o.top1 is None else f"{o.top1:.2%}"]
            for o in result.comparison.outputs]
    click.echo(table(["output", "status", "max abs", "max rel", "NMSE", "cosine", "within", "top-1"], rows))
    click.echo(result.comparison.summary() + (f" (worst of {result.samples} samples: #{result.worst_sample})"
                                              if result.samples > 1 else ""))
    found = result.localization
    if found is not None:
        click.echo(found.summary())
        if found.found:
            detail = [[("input" if n < len(found.inputs) else "output"), e["name"], f"{e.get('max_abs', 0):.3g}",
                       f"{e.get('cosine', 1.0):.6f}" if "cosine" in e else "-"]
                      for n, e in enumerate(found.inputs + found.outputs)]
            click.echo(table(["side", "tensor", "max abs", "cosine"], detail))
