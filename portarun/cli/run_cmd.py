"""`portarun run`: run a model or artifact once and summarize (and optionally save) its outputs."""

from __future__ import annotations

import io
import time
from pathlib import Path

import click

from .._atomic import atomic_write_bytes
from ._common import lazy, parse_dims, parse_key_values, parse_options
from .options import (backend_options_option, dims_option, inputs_option, precision_option, seed_option,
                      target_option)

compile_model = lazy(".api", "compile")
load, load_compiled = lazy(".api", "load"), lazy(".api", "load_compiled")
is_artifact = lazy(".artifact", "is_artifact")
load_feed_files, random_feeds = lazy(".feeds", "load_feed_files"), lazy(".feeds", "random_feeds")
builtin_default_dims = lazy(".models", "builtin_default_dims")


@click.command("run")
@click.argument("model_or_artifact")
@target_option()
@precision_option()
@backend_options_option()
@click.option("--input", "input_files", multiple=True, metavar="NAME=FILE.npy", help="One input from a .npy file.")
@inputs_option()
@click.option("--random", "use_random", is_flag=True, help="Random inputs (floats ~ N(0,1), ints in [0,10)).")
@seed_option("Seed for --random.")
@dims_option("Size of a symbolic dim for --random.")
@click.option("--rebuild", is_flag=True, help="Recompile an artifact that was built by another SDK version.")
@click.option("-o", "--output", type=click.Path(), help="Save outputs to this .npz.")
def run(model_or_artifact: str, target: str | None, precision: str, options: tuple[str, ...],
        input_files: tuple[str, ...], inputs_npz: str | None, use_random: bool, seed: int, dims: tuple[str, ...],
        rebuild: bool, output: str | None) -> None:
    """Run MODEL_OR_ARTIFACT once and print each output's shape, dtype and summary.

    \b
    Examples:
      portarun run builtin:mlp -t onnxruntime:cpu --random
      portarun run model.onnx -t onnxruntime:cpu --input x=x.npy -o out.npz
      portarun run build/model.ort-cpu --inputs feeds.npz
      portarun run builtin:transformer -t reference --random --dim seq=32 --seed 1
    """
    if sum([bool(input_files or inputs_npz), use_random]) != 1:
        raise click.UsageError("give the inputs: --input NAME=FILE.npy / --inputs FILE.npz, or --random")
    if is_artifact(model_or_artifact):
        executable = load_compiled(model_or_artifact, target, rebuild=rebuild)
    else:
        if not target:
            raise click.UsageError("missing -t/--target for a model file (artifacts carry their own target)")
        executable = compile_model(load(model_or_artifact), target, precision, **parse_options(options))
    with executable:
        if use_random:
            feeds = random_feeds(executable.inputs, seed=seed, dims={**builtin_default_dims(model_or_artifact),
                                                                       **parse_dims(dims)})
        else:
            feeds = load_feed_files(parse_key_values(input_files, "--input"), inputs_npz)
        start = time.perf_counter()
        outputs = executable.run(feeds)
        elapsed = time.perf_counter() - start
        prov = executable.provenance
        click.echo(f"ran {executable.model.name} on {executable.target} ({prov.backend} {prov.sdk_version}, "
                   f"{', '.join(prov.providers) or '-'}) at {executable.precision} in {elapsed * 1e3:.2f} ms")
        for name, value in outputs.items():
            click.echo(_summary(name, value))
        if output:
            buffer = io.BytesIO()
            import numpy as np

            np.savez(buffer, **{k: np.asarray(v) for k, v in outputs.items()})
            atomic_write_bytes(Path(output), buffer.getvalue())
            click.echo(f"wrote {output}")


def _summary(name: str, value) -> str:
    import numpy as np

    array = np.asarray(value)
    head = f"  {name}: {array.dtype.name}{list(array.shape)}"
    if array.size and array.dtype.kind in "fiub":
        data = array.astype(np.float64)
        first = ", ".join(f"{v:.5g}" for v in data.ravel()[:4])
        head += (f"  min={np.nanmin(data):.5g} max={np.nanmax(data):.5g} mean={np.nanmean(data):.5g}"
                 f"  [{first}{', ...' if array.size > 4 else ''}]")
    return head
