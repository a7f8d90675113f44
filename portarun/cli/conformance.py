"""`portarun conformance`: the built-in models on every available target, parity and latency."""

from __future__ import annotations

import click

from ..registry import available_targets
from ..types import Precision, Target
from ._common import EXIT_FAILED, table


@click.command("conformance")
@click.option("-t", "--target", "targets", multiple=True, help="Target(s) to test; default every available one.")
@click.option("-p", "--precision", "precisions", multiple=True, help="Precision(s); default fp32.")
@click.option("--runs", default=20, show_default=True, help="Timed runs per case after warm-up.")
@click.pass_context
def conformance(ctx: click.Context, targets: tuple[str, ...], precisions: tuple[str, ...], runs: int) -> None:
    """Check parity against the reference and measure latency for the built-in models.

    With no options this is portarun's main job on a fresh machine: every built-in
    model on every available backend, compared with the onnx reference evaluator.
    Exits 1 when any case fails its tolerance.

    \b
    Examples:
      portarun conformance
      portarun conformance -t onnxruntime:cpu -p fp32 --runs 50
    """
    from portarun_conformance import builtin_cases, run_matrix

    chosen = [Target.parse(t) for t in targets] or [t for t in available_targets() if t.backend != "reference"]
    chosen_precisions = [Precision.parse(p) for p in precisions] or [Precision.FP32]
    cases = builtin_cases()
    total = len(cases) * len(chosen) * len(chosen_precisions)
    done = []

    def progress(result) -> None:
        done.append(result)
        click.echo(f"[{len(done)}/{total}] {result.case} on {result.target} {result.precision}: {result.status}",
                   err=True)

    matrix = run_matrix(cases, chosen, chosen_precisions, runs=runs, progress=progress)
    rows = []
    for r in matrix.results:
        parity = r.comparison.summary() if r.comparison else r.message
        latency = f"{r.timing.median_ms:.3f}" if r.timing else "-"
        rows.append([r.target, r.case, r.precision, r.status.upper(), latency, parity])
    click.echo(table(["target", "model", "precision", "status", "median ms", "parity vs reference"], rows))
    if not matrix.passed:
        ctx.exit(EXIT_FAILED)
