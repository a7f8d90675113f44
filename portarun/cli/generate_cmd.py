"""`portarun generate`: greedy generation with a KV-cache decoder on one target; TTFT, TPOT, tokens/s."""

from __future__ import annotations

from typing import Any

import click

from ._common import parse_options
from .options import (backend_options_option, emit_json, json_option, precision_option, seed_option, target_option,
                      warmup_option)

SIZE_ALIASES = {"tiny": "decoder-tiny", "small": "decoder-small", "1b": "decoder-1b"}


def prompt_options(function: Any) -> Any:
    """--prompt / --prompt-file with --tokenizer: text in, text out."""
    for option in reversed([
        click.option("--prompt", help="Prompt text (needs --tokenizer); without it the prompt is random token ids."),
        click.option("--prompt-file", type=click.Path(dir_okay=False), help="Prompt text from a file."),
        click.option("--tokenizer", type=click.Path(), metavar="DIR|tokenizer.json",
                     help="Hugging Face tokenizer for --prompt (default: tokenizer.json beside MODEL); read offline."),
    ]):
        function = option(function)
    return function


def sampling_options(function: Any) -> Any:
    """--temperature, --top-k, --top-p (seeded by --seed)."""
    for option in reversed([
        click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0),
                     help="0: greedy; above 0: sample from softmax(logits / temperature)."),
        click.option("--top-k", type=click.IntRange(min=1), help="Sample among the k most likely tokens."),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True),
                     help="Sample from the smallest set of tokens whose probability reaches p (nucleus)."),
    ]):
        function = option(function)
    return function


@click.command("generate")
@click.argument("model")
@target_option()
@precision_option()
@backend_options_option()
@prompt_options
@click.option("--prompt-tokens", default=16, show_default=True, help="Random prompt length (without --prompt).")
@click.option("--max-new-tokens", "--new-tokens", "new_tokens", default=128, show_default=True,
              help="Tokens to generate after the prompt (fewer when every sequence reaches EOS).")
@sampling_options
@click.option("--batch", default=1, show_default=True, help="Sequences generated together (random prompts).")
@click.option("--cache", type=click.Choice(["auto", "dynamic", "static"]), default="auto", show_default=True,
              help="auto: static where the backend compiles per shape (XLA), dynamic elsewhere; dynamic: the cache "
                   "grows each step; static: preallocated, fixed shapes.")
@click.option("--bucket", default=128, show_default=True, help="Static cache capacity is rounded up to this.")
@click.option("--names", "names", multiple=True, metavar="KEY=NAME",
              help="Map a decoder's names: input_ids, attention_mask, position_ids, logits, use_cache_branch, "
                   "past=PATTERN, present=PATTERN ({i}: layer, {kind}: key/value), e.g. past=past.{i}.{kind}.")
@warmup_option(1, "Untimed generations first, with the same shapes as the timed one for a static cache "
                  "(compiles, warms caches); 0: none.")
@seed_option("Seed for the random prompt and for sampling.")
@click.option("--show-tokens", is_flag=True, help="Print the generated token ids.")
@json_option("Write the result as JSON to PATH ('-': stdout): text, tokens, timings, provenance.")
def generate(model: str, target: str | None, precision: str | None, options: tuple[str, ...], **args: Any) -> None:
    """Generate with MODEL (a KV-cache decoder file or a built-in): text after --prompt with --tokenizer,
    or token ids after a random prompt; greedy unless --temperature; TTFT, TPOT, tokens/s.

    \b
    MODEL: decoder-tiny | decoder-small | decoder-1b (or tiny | small | 1b), or an .onnx decoder
    with past_key_values.N.key/value inputs and present.N.key/value outputs (other names: --names).
    -p int8-weight / int4-weight quantize a float decoder first (portarun.quantize).

    \b
    Examples:
      portarun generate llama.onnx -t onnxruntime:cpu --tokenizer ./my-llama --prompt "Once upon a time"
      portarun generate llama.onnx -t xla:cpu --prompt "Hi" --temperature 0.8 --top-p 0.9 --seed 1
      portarun generate tiny -t onnxruntime:cpu --new-tokens 32
      portarun generate decoder-small -t openvino:cpu -p int8-weight
    """
    from ..api import compile as compile_model
    from ..api import default_precision

    if not target:
        raise click.UsageError("missing -t/--target, e.g. -t onnxruntime:cpu")
    for name in ("prompt_tokens", "new_tokens", "batch"):
        if args[name] < 1:
            raise click.BadParameter(f"must be at least 1, got {args[name]}", param_hint="--" + name.replace("_", "-"))
    backend_options = parse_options(options)
    loaded = decoder_model(SIZE_ALIASES.get(model, model), target, precision, backend_options)
    wanted = precision or default_precision(loaded)
    with compile_model(loaded, target, wanted, **backend_options) as executable:
        if args["prompt"] is not None or args["prompt_file"] is not None:
            data = text_generation(executable, model, args)
        else:
            data = token_generation(executable, args)
        data = {"model": loaded.name, "target": str(executable.target), "precision": str(executable.precision),
                "provenance": executable.provenance.to_dict(), **data}
    if not emit_json(data, args["json_path"], indent=2):
        print_generation(data, args["show_tokens"])


def _sampling(args: dict[str, Any]) -> Any:
    from ..generate import Sampling

    if args["temperature"] == 0 and (args["top_k"] or args["top_p"]):
        raise click.UsageError("--top-k/--top-p sample: give a --temperature above 0")
    return Sampling(args["temperature"], args["top_k"], args["top_p"], args["seed"])


def text_generation(executable: Any, model: str, args: dict[str, Any]) -> dict[str, Any]:
    """Prompt text -> tokens -> generated text (portarun.text_generation), after ``--warmup`` untimed runs."""
    from pathlib import Path

    from ..text_generation import generate_text

    tokenizer = args["tokenizer"] or (Path(model).parent if Path(model).is_file() else None)
    if tokenizer is None:
        raise click.UsageError("--prompt needs --tokenizer DIR (a Hugging Face tokenizer folder or tokenizer.json)")
    run = dict(prompt=args["prompt"], prompt_file=args["prompt_file"], max_new_tokens=args["new_tokens"],
               sampling=_sampling(args), cache=args["cache"], bucket=args["bucket"], names=list(args["names"]) or None)
    for _ in range(args["warmup"]):
        generate_text(executable, tokenizer, **run)
    out = generate_text(executable, tokenizer, **run)
    return {**out.to_dict(), "cache": out.result.cache, "capacity": out.result.capacity,
            "batch": 1, "prompt_length": len(out.prompt_tokens), "generation": out.result.summary()}


def token_generation(executable: Any, args: dict[str, Any]) -> dict[str, Any]:
    result, capacity = timed_generation(executable, args["batch"], args["prompt_tokens"], args["new_tokens"],
                                        args["cache"], args["bucket"], args["warmup"], args["seed"],
                                        sampling=_sampling(args), names=list(args["names"]) or None)
    return {**result.to_dict(), "capacity": capacity, "generation": result.summary()}


def print_generation(data: dict[str, Any], show_tokens: bool) -> None:
    prov, gen = data["provenance"], data["generation"]
    click.echo(f"{data['model']} on {data['target']} ({prov['backend']} {prov['sdk_version']}) at "
               f"{data['precision']}, {gen['cache']} cache" + (f" of {gen['capacity']} slots" if gen['capacity'] else ""))
    if "text" in data:
        click.echo(f"{data['prompt']}{data['text'] if data['text'][:1] in ('', ' ') else ' ' + data['text']}")
    click.echo(f"  batch {gen['batch']}, prompt {gen['prompt_tokens']} tokens, generated {gen['generated_tokens']} "
               f"tokens ({gen['decode_steps']} decode steps)" + (", stopped at EOS" if data.get("stopped_at_eos") else ""))
    click.echo(f"  TTFT {gen['ttft_ms']:.2f} ms, TPOT median {gen['tpot_median_ms']:.2f} ms "
               f"p99 {gen['tpot_p99_ms']:.2f} ms, decode {gen['decode_tokens_per_s']:.1f} tokens/s")
    if show_tokens:
        rows = [data["tokens"]] if "text" in data else data["tokens"]
        for row in rows:
            click.echo("  " + " ".join(str(int(t)) for t in row))


def decoder_model(source: str, target: str, precision: str | None, backend_options: dict[str, Any]) -> Any:
    """The decoder to compile: quantized first (portarun.quantize, with decoder-sized calibration feeds) when
    a float model is asked for at a quantized precision, unless the backend quantizes float models itself."""
    from ..api import load
    from ..model import quantization_of
    from ..registry import get_backend, resolve_target
    from ..types import Precision

    loaded = load(source)
    wanted = Precision.parse(precision) if precision else None
    native = get_backend(resolve_target(target).backend).quantizes_float_models(backend_options)
    if wanted is not None and wanted.is_quantized and quantization_of(loaded) is None and not native:
        from .. import quantize

        click.echo(f"quantizing {loaded.name} to {wanted} (portarun.quantize) ...", err=True)
        loaded = quantize(loaded, wanted, dims={"batch": 1, "seq": 8, "past_seq": 0, "total_seq": 8}).model
    return loaded


def timed_generation(executable: Any, batch: int, prompt_tokens: int, new_tokens: int, cache: str, bucket: int,
                     warmup: int, seed: int, *, sampling: Any = None, names: Any = None) -> tuple[Any, int | None]:
    """``warmup`` untimed generations, then the measured one; returns it and the static cache capacity."""
    import numpy as np

    from ..generate import DecoderSignature, generate as run_generation, resolve_cache, static_capacity

    signature = DecoderSignature.of(executable, names)
    cache = resolve_cache(executable, cache, signature)
    prompt = np.random.default_rng(seed).integers(0, signature.vocab or 100, size=(batch, prompt_tokens),
                                                  dtype=np.int64)
    capacity = static_capacity(prompt_tokens + new_tokens - 1, bucket) if cache == "static" else None
    run = dict(cache=cache, capacity=capacity, sampling=sampling, names=names)
    for _ in range(warmup):  # same shapes as the measured run for a static cache; prefill + 2 steps otherwise
        run_generation(executable, prompt, min(new_tokens, 3), **run)
    return run_generation(executable, prompt, new_tokens, **run), capacity
