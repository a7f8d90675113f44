"""`portarun compare`: run one model on two targets with the same feeds and compare the outputs;
with --localize, bisect to the first node whose output leaves tolerance."""

from __future__ import annotations

import json

import click

from .._atomic import atomic_write_text
from ._common import EXIT_FAILED, parse_dims, table


@click.command("compare")
@click.argument("model")
@click.option("-t", "--target", "targets", multiple=True, required=True,
              help="Two targets: the first is the expected side, the second is checked against it. "
                   "One target is checked against reference:cpu.")
@click.option("-p", "--precision", default="fp32", show_default=True,
              help="Precision of the checked target (the expected side runs the model as written).")
@click.option("--localize", is_flag=True, help="Bisect to the first divergent node (onnx.utils.Extractor subgraphs).")
@click.option("--rtol", type=float, help="Override the precision's relative tolerance.")
@click.option("--atol", type=float, help="Override the precision's absolute tolerance.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE", help="Size of a symbolic dim for the feeds.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random feeds.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the comparison as JSON.")
@click.pass_context
def compare(ctx: click.Context, model: str, targets: tuple[str, ...], precision: str, localize: bool,
            rtol: float | None, atol: float | None, dims: tuple[str, ...], seed: int, json_path: str | None) -> None:
    """Compare MODEL's outputs on two targets: max abs/rel error, NMSE, cosine, % within tolerance,
    top-1 agreement. Exits 1 when they differ beyond the tolerance of the precision.

    \b
    Examples:
      portarun compare builtin:transformer -t onnxruntime:cpu -t openvino:cpu
      portarun compare model.onnx -t reference:cpu -t xla:cpu --localize
    """
    from dataclasses import replace

    import portarun
    from portarun.model import quantization_of
    from portarun_conformance import case_for, localize as localize_divergence, tolerance_for

    from ..registry import resolve_target
    from ..types import Precision

    if len(targets) > 2:
        raise click.BadParameter("give one or two targets", param_hint="-t")
    expected_target, actual_target = (("reference:cpu",) + targets)[-2:]
    actual_target = str(resolve_target(actual_target))
    case = case_for(model, parse_dims(dims))
    loaded = case.load()
    feeds = portarun.random_feeds(loaded.inputs, seed=seed, dims=case.dims)
    precision_enum = Precision.parse(precision)
    tolerance = tolerance_for(precision_enum, backend=resolve_target(actual_target).backend, case=case.name)
    if rtol is not None or atol is not None:
        tolerance = replace(tolerance, rtol=tolerance.rtol if rtol is None else rtol,
                            atol=tolerance.atol if atol is None else atol)
    with portarun.compile(loaded, expected_target, quantization_of(loaded) or "fp32") as exe:
        expected = exe.run(feeds)
        expected_provenance = exe.provenance.to_dict()
    with portarun.compile(loaded, actual_target, precision_enum) as exe:
        actual = exe.run(feeds)
        actual_provenance = exe.provenance.to_dict()
    result = portarun.compare(actual, expected, tolerance)
    click.echo(f"{case.name}: {actual_provenance['target']} ({actual_provenance['precision']}) vs "
               f"{expected_provenance['target']} ({expected_provenance['precision']}); tolerance "
               f"rtol={tolerance.rtol:g} atol={tolerance.atol:g}"
               + (f" min_cosine={tolerance.min_cosine}" if tolerance.min_cosine is not None else ""))
    rows = [[o.name, "PASS" if o.passed else "FAIL", f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", f"{o.nmse:.3g}",
             f"{o.cosine:.6f}", f"{o.within:.2%}", "-" if o.top1 is None else f"{o.top1:.2%}"]
            for o in result.outputs]
    click.echo(table(["output", "status", "max abs", "max rel", "NMSE", "cosine", "within", "top-1"], rows))
    click.echo(result.summary())
    found = None
    if localize:
        found = localize_divergence(loaded, actual_target, precision_enum, feeds, reference=expected_target,
                                    tolerance=tolerance)
        click.echo(found.summary())
        if found.found:
            detail = [[("input" if n < len(found.inputs) else "output"), e["name"], f"{e.get('max_abs', 0):.3g}",
                       f"{e.get('cosine', 1.0):.6f}" if "cosine" in e else "-"]
                      for n, e in enumerate(found.inputs + found.outputs)]
            click.echo(table(["side", "tensor", "max abs", "cosine"], detail))
    if json_path:
        atomic_write_text(json_path, json.dumps({"case": case.name, "expected": expected_provenance,
                                                 "actual": actual_provenance, "comparison": result.to_dict(),
                                                 "localization": found.to_dict() if found else None},
                                                indent=1, default=str))
    if not result:
        ctx.exit(EXIT_FAILED)
