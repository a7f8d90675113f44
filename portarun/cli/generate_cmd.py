"""`portarun generate`: greedy generation with a KV-cache decoder on one target; TTFT, TPOT, tokens/s."""

from __future__ import annotations

from typing import Any

import click

from ._common import parse_options
from .options import (backend_options_option, emit_json, json_option, precision_option, seed_option, target_option,
                      warmup_option)

SIZE_ALIASES = {"tiny": "decoder-tiny", "small": "decoder-small", "1b": "decoder-1b"}


@click.command("generate")
@click.argument("model")
@target_option()
@precision_option()
@backend_options_option()
@click.option("--prompt-tokens", default=16, show_default=True, help="Prompt length (seeded random token ids).")
@click.option("--new-tokens", default=128, show_default=True, help="Tokens to generate after the prompt.")
@click.option("--batch", default=1, show_default=True, help="Sequences generated together.")
@click.option("--cache", type=click.Choice(["dynamic", "static"]), default="dynamic", show_default=True,
              help="dynamic: the cache grows each step; static: preallocated, fixed shapes (XLA).")
@click.option("--bucket", default=128, show_default=True, help="Static cache capacity is rounded up to this.")
@warmup_option(1, "Untimed generations first, with the same shapes as the timed one for a static cache "
                  "(compiles, warms caches); 0: none.")
@seed_option("Seed for the prompt tokens.")
@click.option("--show-tokens", is_flag=True, help="Print the generated token ids.")
@json_option("Write the result as JSON to PATH ('-': stdout).")
def generate(model: str, target: str | None, precision: str, options: tuple[str, ...], prompt_tokens: int,
             new_tokens: int, batch: int, cache: str, bucket: int, warmup: int, seed: int, show_tokens: bool,
             json_path: str | None) -> None:
    """Generate NEW_TOKENS greedily after a random prompt with MODEL (a decoder file or a built-in).

    \b
    MODEL: decoder-tiny | decoder-small | decoder-1b (or tiny | small | 1b), or an .onnx decoder
    with past_key_values.N.key/value inputs and present.N.key/value outputs.
    -p int8-weight / int4-weight quantize a float decoder first (portarun.quantize).

    \b
    Examples:
      portarun generate tiny -t onnxruntime:cpu --new-tokens 32
      portarun generate decoder-small -t openvino:cpu -p int8-weight
      portarun generate decoder-1b -t xla:gpu -p bf16 --cache static
    """
    from ..api import compile as compile_model
    from ..types import Precision

    if not target:
        raise click.UsageError("missing -t/--target, e.g. -t onnxruntime:cpu")
    for name, value in (("--prompt-tokens", prompt_tokens), ("--new-tokens", new_tokens), ("--batch", batch)):
        if value < 1:
            raise click.BadParameter(f"must be at least 1, got {value}", param_hint=name)
    wanted = Precision.parse(precision)
    backend_options = parse_options(options)
    loaded = decoder_model(SIZE_ALIASES.get(model, model), wanted, backend_options)
    with compile_model(loaded, target, wanted, **backend_options) as executable:
        result, capacity = timed_generation(executable, batch, prompt_tokens, new_tokens, cache, bucket, warmup, seed)
        prov = executable.provenance
        data = {"model": loaded.name, "target": str(executable.target), "precision": str(executable.precision),
                "provenance": prov.to_dict(), **result.to_dict()}
    if emit_json(data, json_path, indent=2):
        return
    click.echo(f"{loaded.name} on {data['target']} ({prov.backend} {prov.sdk_version}) at "
               f"{data['precision']}, {cache} cache" + (f" of {capacity} slots" if capacity else ""))
    click.echo(f"  batch {batch}, prompt {result.prompt_tokens} tokens, generated {result.generated_tokens} "
               f"tokens ({result.decode_steps} decode steps)")
    click.echo(f"  TTFT {result.ttft_s * 1e3:.2f} ms, TPOT median {result.tpot_median_s * 1e3:.2f} ms "
               f"p99 {result.tpot_p99_s * 1e3:.2f} ms, decode {result.decode_tokens_per_s:.1f} tokens/s")
    if show_tokens:
        for row in result.tokens:
            click.echo("  " + " ".join(str(int(t)) for t in row))


def decoder_model(source: str, wanted: Any, backend_options: dict[str, Any]) -> Any:
    """The decoder to compile: quantized first (portarun.quantize) when a float model is asked for at a
    quantized precision, unless a ``quantizer`` option (openvino: nncf) names the backend's own quantizer."""
    from ..api import load
    from ..model import quantization_of

    loaded = load(source)
    if wanted.is_quantized and quantization_of(loaded) is None and "quantizer" not in backend_options:
        from .. import quantize

        click.echo(f"quantizing {loaded.name} to {wanted} (portarun.quantize) ...", err=True)
        loaded = quantize(loaded, wanted, dims={"batch": 1, "seq": 8, "past_seq": 0, "total_seq": 8}).model
    return loaded


def timed_generation(executable: Any, batch: int, prompt_tokens: int, new_tokens: int, cache: str, bucket: int,
                     warmup: int, seed: int) -> tuple[Any, int | None]:
    """``warmup`` untimed generations, then the measured one; returns it and the static cache capacity."""
    import numpy as np

    from ..generate import DecoderSignature, generate as run_generation, static_capacity

    signature = DecoderSignature.of(executable)
    prompt = np.random.default_rng(seed).integers(0, signature.vocab or 100, size=(batch, prompt_tokens),
                                                  dtype=np.int64)
    capacity = static_capacity(prompt_tokens + new_tokens - 1, bucket) if cache == "static" else None
    for _ in range(warmup):  # same shapes as the measured run for a static cache; prefill + 2 steps otherwise
        run_generation(executable, prompt, min(new_tokens, 3), cache=cache, capacity=capacity)
    return run_generation(executable, prompt, new_tokens, cache=cache, capacity=capacity), capacity
