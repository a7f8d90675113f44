"""`portarun export-triton`: write a model repository for NVIDIA Triton Inference Server."""

from __future__ import annotations

import click

from .options import precision_option, target_option


@click.command("export-triton")
@click.argument("model_or_artifact")
@target_option()
@precision_option(default="fp32")
@click.option("--repo", required=True, type=click.Path(file_okay=False), help="Model repository folder.")
@click.option("--name", help="Model name (the folder under --repo); default: the file's stem.")
@click.option("--max-batch-size", type=click.IntRange(min=0),
              help="Triton's max_batch_size (0: no batching); default 8 when the first dim is a batch dim.")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Model instances (instance_group count).")
@click.option("--from-bench", type=click.Path(exists=True, dir_okay=False),
              help="A `portarun bench --json` sweep: its best batch sizes become preferred_batch_size.")
@click.option("--python-backend", is_flag=True, help="Run portarun inside Triton's python backend for any target.")
def export_triton(model_or_artifact: str, target: str | None, precision: str, repo: str, name: str | None,
                  max_batch_size: int | None, instances: int, from_bench: str | None, python_backend: bool) -> None:
    """Write REPO/NAME/config.pbtxt and REPO/NAME/1/... so Triton serves MODEL_OR_ARTIFACT.

    The Triton backend follows the target: onnxruntime (with the TensorRT or OpenVINO
    accelerator), openvino, tensorrt_plan (from a tensorrt artifact), or python (XLA and others).

    \b
    Examples:
      portarun export-triton builtin:mlp -t onnxruntime:tensorrt -p fp16 --repo models
      portarun export-triton build/mlp.trt --repo models --instances 2
      docker run --gpus all -p8000:8000 -v $PWD/models:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models
    """
    from ..serve.triton import export_triton as export

    result = export(model_or_artifact, repo, target, precision, name=name, max_batch_size=max_batch_size,
                    instances=instances, from_bench=from_bench, python_backend=python_backend)
    files = sorted(p.relative_to(result.path).as_posix() for p in result.path.rglob("*") if p.is_file())
    click.echo(f"wrote {result.path} for Triton's {result.backend} backend "
               f"(max_batch_size {result.max_batch_size}): {', '.join(files[:6])}"
               + (" ..." if len(files) > 6 else ""))
    click.echo("checked config.pbtxt against Triton's ModelConfig" if result.checked else
               "config.pbtxt not checked: pip install 'portarun[triton]' for tritonclient's ModelConfig")
