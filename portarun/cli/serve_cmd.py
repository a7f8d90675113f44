"""`portarun serve`: deploy a model on Ray Serve, answering the Open Inference Protocol (KServe v2)."""

from __future__ import annotations

import click

from ._common import parse_options
from .options import backend_options_option, precision_option, target_option


def _autoscale(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        low, high = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MIN,MAX (e.g. 1,4), got '{value}'") from None
    return low, high


@click.command("serve")
@click.argument("model_or_artifact")
@target_option()
@precision_option(default="fp32")
@backend_options_option()
@click.option("--name", help="Model name in the URL (/v2/models/NAME); default: the file's stem.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the HTTP proxy binds.")
@click.option("--port", default=8000, show_default=True, help="HTTP port.")
@click.option("--replicas", type=click.IntRange(min=1), help="Fixed number of replicas (default 1).")
@click.option("--autoscale", callback=_autoscale, metavar="MIN,MAX", help="Let Ray Serve scale replicas on load.")
@click.option("--max-batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Dynamic batching: most requests per run (1 turns batching off).")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Dynamic batching: how long a batch waits to fill.")
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Join this Ray cluster (default: start a local one).")
def serve(model_or_artifact: str, target: str | None, precision: str, options: tuple[str, ...], name: str | None,
          host: str, port: int, replicas: int | None, autoscale: tuple[int, int] | None, max_batch_size: int,
          batch_wait_ms: float, ray_address: str | None) -> None:
    """Serve MODEL_OR_ARTIFACT over HTTP with the Open Inference Protocol until Ctrl-C or SIGTERM.

    Any KServe v2 / Triton HTTP client works (tritonclient.http, KServe's client, curl).

    \b
    Examples:
      portarun serve builtin:mlp -t onnxruntime:cpu --port 8000
      portarun serve build/model.ort-cpu --autoscale 1,4 --max-batch-size 16
      curl localhost:8000/v2/models/mlp
    """
    if replicas is not None and autoscale is not None:
        raise click.UsageError("give --replicas or --autoscale, not both")
    from ..serve import serve as serve_model

    handle = serve_model(model_or_artifact, target, precision, name=name, host=host, port=port,
                         replicas=replicas or 1, autoscale=autoscale, max_batch_size=max_batch_size,
                         batch_wait_ms=batch_wait_ms, options=parse_options(options), ray_address=ray_address)
    click.echo(f"serving '{handle.name}' at {handle.url}/v2/models/{handle.name} (Ctrl-C to stop)")
    handle.wait()
    click.echo("stopped")
