"""`portarun inspect`: opsets, signature, op histogram, parameter count and bytes."""

from __future__ import annotations

import click

from ._common import lazy, table
from .options import emit_json, json_option

load, default_precision = lazy(".api", "load"), lazy(".api", "default_precision")


@click.command("inspect")
@click.argument("model")
@json_option("Write what is inside as JSON to PATH ('-': stdout).")
@click.option("--no-check", is_flag=True, help="Skip onnx.checker and shape inference (inspect broken models).")
@click.option("--save", "save_path", type=click.Path(dir_okay=False),
              help="Also write the model to this .onnx file (e.g. a built-in, to try the other commands on).")
def inspect(model: str, json_path: str | None, no_check: bool, save_path: str | None) -> None:
    """Show what is inside MODEL (an .onnx file or builtin:NAME).

    \b
    Examples:
      portarun inspect model.onnx
      portarun inspect builtin:transformer --json -
      portarun inspect builtin:transformer --save model.onnx
    """
    loaded = load(model, check=not no_check)
    if save_path:
        loaded.save(save_path)
        click.echo(f"wrote {save_path}", err=True)
    stats = loaded.stats()
    data = {
        "name": loaded.name,
        "path": str(loaded.path) if loaded.path else None,
        "ir_version": loaded.proto.ir_version,
        "opsets": loaded.opsets,
        "producer": f"{loaded.proto.producer_name} {loaded.proto.producer_version}".strip(),
        "sha256": loaded.sha256,
        "inputs": [s.to_dict() for s in loaded.inputs],
        "outputs": [s.to_dict() for s in loaded.outputs],
        "nodes": stats.nodes,
        "op_histogram": stats.op_histogram,
        "parameters": stats.parameters,
        "parameter_bytes": stats.parameter_bytes,
        "precision_as_written": str(default_precision(loaded)),
        "notes": list(loaded.notes),  # what loading accepted but found odd (-1 dims, wrong declared shapes)
    }
    if emit_json(data, json_path, indent=2):
        return
    click.echo(f"model      {data['name']}" + (f"  ({data['path']})" if data["path"] else ""))
    click.echo(f"ir/opsets  IR {data['ir_version']}; " + ", ".join(f"{d} {v}" for d, v in data["opsets"].items()))
    if data["producer"]:
        click.echo(f"producer   {data['producer']}")
    click.echo(f"sha256     {data['sha256']}")
    click.echo(f"parameters {stats.parameters:,} ({_bytes(stats.parameter_bytes)}); runs as {data['precision_as_written']}"
               " without -p")
    for note in data["notes"]:
        click.echo(f"note       {note}")
    click.echo("")
    rows = [["input", s.name, s.dtype.name, s.shape_text()] for s in loaded.inputs]
    rows += [["output", s.name, s.dtype.name, s.shape_text()] for s in loaded.outputs]
    click.echo(table(["", "name", "dtype", "shape"], rows))
    click.echo("")
    click.echo(f"{stats.nodes} nodes:")
    click.echo(table(["op", "count"], [[op, n] for op, n in stats.op_histogram.items()]))


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"
