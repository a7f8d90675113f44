"""`portarun run`: run a model or artifact once and summarize (and optionally save) its outputs."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import click

from .._atomic import atomic_write_bytes
from ._common import lazy, parse_dims, parse_options
from .feed_options import feed_source_options, feeds_from_options, has_user_feeds
from .options import (backend_options_option, dims_option, isolate_option, precision_option, seed_option,
                      target_option, timeout_option)

compile_model = lazy(".api", "compile")
load, load_compiled = lazy(".api", "load"), lazy(".api", "load_compiled")
is_artifact = lazy(".artifact", "is_artifact")
builtin_default_dims = lazy(".models", "builtin_default_dims")


@click.command("run")
@click.argument("model_or_artifact")
@target_option()
@precision_option()
@backend_options_option()
@feed_source_options
@click.option("--random", "use_random", is_flag=True,
              help="Random inputs that respect the graph (ids inside their table, 0/1 masks, floats ~ N(0,1)).")
@seed_option("Seed for --random.")
@dims_option("Size of a symbolic dim for --random.")
@click.option("--rebuild", is_flag=True, help="Recompile an artifact that was built by another SDK version.")
@click.option("-o", "--output", type=click.Path(), help="Save outputs to this .npz.")
@isolate_option()
@timeout_option()
def run(model_or_artifact: str, target: str | None, precision: str | None, options: tuple[str, ...],
        use_random: bool, seed: int, dims: tuple[str, ...], rebuild: bool, output: str | None,
        isolate: bool, timeout: float | None, **feed_values: Any) -> None:
    """Run MODEL_OR_ARTIFACT once and print each output's shape, dtype and summary.

    \b
    Examples:
      portarun run builtin:mlp -t onnxruntime:cpu --random
      portarun run model.onnx -t onnxruntime:cpu --input x=x.npy -o out.npz
      portarun run build/model.ort-cpu --inputs feeds.npz
      portarun run minilm.onnx -t openvino:cpu --text "A sentence." --tokenizer ./all-MiniLM-L6-v2
      portarun run builtin:transformer -t reference --random --dim seq=32 --seed 1
    """
    if sum([has_user_feeds(feed_values), use_random]) != 1:
        raise click.UsageError("give the inputs: --input NAME=FILE.npy / --inputs FILE.npz|DIR / --text, or --random")
    if is_artifact(model_or_artifact):
        executable = load_compiled(model_or_artifact, target, rebuild=rebuild, isolate=isolate, timeout=timeout)
    else:
        if not target:
            raise click.UsageError("missing -t/--target for a model file (artifacts carry their own target)")
        executable = compile_model(load(model_or_artifact), target, precision, isolate=isolate, timeout=timeout,
                                   **parse_options(options))
    with executable:
        feeds = feeds_from_options(executable, feed_values, dims=parse_dims(dims), seed=seed,
                                   default_dims=builtin_default_dims(model_or_artifact))
        start = time.perf_counter()
        outputs = executable.run(feeds[0])
        elapsed = time.perf_counter() - start
        prov = executable.provenance
        click.echo(f"ran {executable.model.name} on {executable.target} ({prov.backend} {prov.sdk_version}, "
                   f"{', '.join(prov.providers) or '-'}) at {executable.precision} in {elapsed * 1e3:.2f} ms"
                   + (f" (sample 1 of {len(feeds)})" if len(feeds) > 1 else ""))
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
