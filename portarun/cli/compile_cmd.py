"""`portarun compile`: MODEL -> compiled artifact directory."""

from __future__ import annotations

import click

from ..progress import status
from ._common import lazy, parse_options
from .options import backend_options_option, isolate_option, precision_option, target_option, timeout_option

compile_model = lazy(".api", "compile")
load = lazy(".api", "load")


@click.command("compile")
@click.argument("model")
@target_option()
@precision_option()
@backend_options_option()
@click.option("-o", "--output", required=True, type=click.Path(), help="Artifact directory to write.")
@isolate_option()
@timeout_option()
def compile_(model: str, target: str | None, precision: str, options: tuple[str, ...], output: str, isolate: bool,
             timeout: float | None) -> None:
    """Compile MODEL (an .onnx file or builtin:NAME) for TARGET and write an artifact.

    The artifact is a directory (manifest.json, the source model, the backend's
    compiled payload), written atomically: a failed compile leaves nothing behind.

    \b
    Examples:
      portarun compile model.onnx -t onnxruntime:cpu -o build/model.ort-cpu
      portarun compile builtin:transformer -t onnxruntime:cpu --option threads=2 -o build/tf
      portarun compile model.q.onnx -t onnxruntime:cpu -p int8 -o build/model.int8
    """
    if not target:
        raise click.UsageError("missing -t/--target (e.g. -t onnxruntime:cpu); `portarun backends` lists them")
    loaded = load(model)
    with status(f"compiling {loaded.name} for {target} at {precision}"):
        executable = compile_model(loaded, target, precision, isolate=isolate, timeout=timeout,
                                   **parse_options(options))
    path = executable.save(output)
    prov = executable.provenance
    click.echo(f"compiled {loaded.name} for {executable.target} at {executable.precision} "
               f"in {prov.compile_seconds or 0:.2f} s")
    click.echo(f"ran with {prov.backend} {prov.sdk_version} on {prov.device}; providers: "
               f"{', '.join(prov.providers) or '-'}")
    implicit = prov.details.get("quantized_by_portarun")
    if implicit:
        click.echo(f"quantized the float model to {implicit['precision']} first (portarun.quantize defaults): "
                   f"weights {implicit['weight_ratio']:.3f}x, cosine min {implicit['cosine_min']:.5f}, floor "
                   f"{implicit['floor']} {'met' if implicit['floor_met'] else 'NOT met'}; "
                   f"`portarun quantize` gives control")
    click.echo(f"wrote {path}")
