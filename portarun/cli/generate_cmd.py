"""`portarun generate`: greedy generation with a KV-cache decoder on one target; TTFT, TPOT, tokens/s."""

from __future__ import annotations

import json

import click

from ._common import option_option, parse_options, precision_option, target_option

SIZE_ALIASES = {"tiny": "decoder-tiny", "small": "decoder-small", "1b": "decoder-1b"}


@click.command("generate")
@click.argument("model")
@target_option
@precision_option
@option_option
@click.option("--prompt-tokens", default=16, show_default=True, help="Prompt length (seeded random token ids).")
@click.option("--new-tokens", default=128, show_default=True, help="Tokens to generate after the prompt.")
@click.option("--batch", default=1, show_default=True, help="Sequences generated together.")
@click.option("--cache", type=click.Choice(["dynamic", "static"]), default="dynamic", show_default=True,
              help="dynamic: the cache grows each step; static: preallocated, fixed shapes (XLA).")
@click.option("--bucket", default=128, show_default=True, help="Static cache capacity is rounded up to this.")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="First run a short generation with the same shapes (compiles, warms caches).")
@click.option("--seed", default=0, show_default=True, help="Seed for the prompt tokens.")
@click.option("--show-tokens", is_flag=True, help="Print the generated token ids.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate(model: str, target: str | None, precision: str, options: tuple[str, ...], prompt_tokens: int,
             new_tokens: int, batch: int, cache: str, bucket: int, warmup: bool, seed: int, show_tokens: bool,
             as_json: bool) -> None:
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
    import numpy as np

    from ..api import compile as compile_model
    from ..api import load
    from ..generate import DecoderSignature, generate as run_generation
    from ..model import quantization_of
    from ..types import Precision

    if not target:
        raise click.UsageError("missing -t/--target, e.g. -t onnxruntime:cpu")
    for name, value in (("--prompt-tokens", prompt_tokens), ("--new-tokens", new_tokens), ("--batch", batch)):
        if value < 1:
            raise click.BadParameter(f"must be at least 1, got {value}", param_hint=name)
    loaded = load(SIZE_ALIASES.get(model, model))
    wanted = Precision.parse(precision)
    backend_options = parse_options(options)
    # a quantizer option (openvino: nncf) is the backend's own quantizer: it takes the float model
    if wanted.is_quantized and quantization_of(loaded) is None and "quantizer" not in backend_options:
        from .. import quantize

        click.echo(f"quantizing {loaded.name} to {wanted} (portarun.quantize) ...", err=True)
        loaded = quantize(loaded, wanted, dims={"batch": 1, "seq": 8, "past_seq": 0, "total_seq": 8}).model
    with compile_model(loaded, target, wanted, **backend_options) as executable:
        signature = DecoderSignature.of(executable)
        rng = np.random.default_rng(seed)
        prompt = rng.integers(0, signature.vocab or 100, size=(batch, prompt_tokens), dtype=np.int64)
        capacity = None
        if cache == "static":
            from ..generate import static_capacity

            capacity = static_capacity(prompt_tokens + new_tokens - 1, bucket)
        if warmup:  # same shapes as the measured run for a static cache; prefill + 2 steps otherwise
            run_generation(executable, prompt, min(new_tokens, 3), cache=cache, capacity=capacity)
        result = run_generation(executable, prompt, new_tokens, cache=cache, capacity=capacity)
        prov = executable.provenance
        if as_json:
            click.echo(json.dumps({"model": loaded.name, "target": str(executable.target),
                                   "precision": str(executable.precision), "provenance": prov.to_dict(),
                                   **result.to_dict()}, indent=2, default=str))
            return
        click.echo(f"{loaded.name} on {executable.target} ({prov.backend} {prov.sdk_version}) at "
                   f"{executable.precision}, {cache} cache" + (f" of {capacity} slots" if capacity else ""))
        click.echo(f"  batch {batch}, prompt {result.prompt_tokens} tokens, generated {result.generated_tokens} "
                   f"tokens ({result.decode_steps} decode steps)")
        click.echo(f"  TTFT {result.ttft_s * 1e3:.2f} ms, TPOT median {result.tpot_median_s * 1e3:.2f} ms "
                   f"p99 {result.tpot_p99_s * 1e3:.2f} ms, decode {result.decode_tokens_per_s:.1f} tokens/s")
        if show_tokens:
            for row in result.tokens:
                click.echo("  " + " ".join(str(int(t)) for t in row))
