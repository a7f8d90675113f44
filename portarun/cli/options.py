"""The options every command shares, defined once: what -t, -p, --dim, --seed, --inputs, --json,
--warmup and --runs mean is the same in every command that takes them.

``--json PATH`` always means "write the JSON document to PATH", with ``-`` for stdout.
``--warmup N`` always means N untimed runs before anything is timed.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

import click

from ..types import Precision

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

TARGET_HELP = "backend[:device[:index]], e.g. onnxruntime:cpu, openvino:cpu, xla:gpu."


class PrecisionChoice(click.Choice):
    """The ``Precision`` enum's values as click choices; aliases ``Precision.parse`` accepts (float32,
    INT8_WEIGHT ...) still work, and an unknown name is portarun's one-line InvalidPrecisionError."""

    name = "precision"

    def __init__(self, precisions: Iterable[Precision] = tuple(Precision)) -> None:
        super().__init__([p.value for p in precisions])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parsed = Precision.parse(value)  # raises InvalidPrecisionError (exit 2, one line, with the choices)
        return super().convert(parsed.value, param, ctx)


def target_option(*, multiple: bool = False, required: bool = False, help: str | None = None) -> Decorator:
    """``-t/--target``: one target (parameter ``target``) or, with ``multiple``, several (``targets``)."""
    return click.option("-t", "--target", "targets" if multiple else "target", metavar="TARGET", multiple=multiple,
                        required=required, help=help or TARGET_HELP)


def precision_option(*, multiple: bool = False, default: str | None = None, required: bool = False,
                     precisions: Iterable[Precision] = tuple(Precision), help: str | None = None) -> Decorator:
    """``-p/--precision`` with the choices taken from ``Precision`` (parameter ``precision`` or ``precisions``).

    With no default the model runs as it is written: fp32 for a float model, the precision an already
    quantized file carries (QDQ, quantize_dynamic output) otherwise; provenance says which."""
    text = help or "What the compiled model computes in."
    if default is None and not (multiple or required):
        text += " Default: as the model is written (fp32 for a float model)."
    return click.option("-p", "--precision", "precisions" if multiple else "precision",
                        type=PrecisionChoice(precisions), multiple=multiple, required=required,
                        default=None if multiple or required else default,
                        show_default=default is not None and not (multiple or required), help=text)


def backend_options_option() -> Decorator:
    """``--option KEY=VALUE`` (repeatable, parameter ``options``; parse with ``_common.parse_options``)."""
    return click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                        help="Backend option (repeatable); `portarun backends --options` lists them.")


def dims_option(help: str = "Size of a symbolic dim for the feeds (repeatable).") -> Decorator:
    """``--dim NAME=SIZE`` (repeatable, parameter ``dims``; parse with ``_common.parse_dims``)."""
    return click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE", help=help)


def seed_option(help: str = "Seed of the random feeds.") -> Decorator:
    return click.option("--seed", default=0, show_default=True, help=help)


def inputs_option(help: str = "Feeds from an .npz (one array per input name; a leading sample axis or 'I/NAME' "
                              "keys hold several samples) or a folder of .npz samples.",
                  flag: str = "--inputs", name: str = "inputs_npz") -> Decorator:
    return click.option(flag, name, type=click.Path(), metavar="FILE.npz|DIR", help=help)


def json_option(help: str = "Write the result as JSON to PATH ('-': stdout).", *aliases: str) -> Decorator:
    """``--json PATH`` (parameter ``json_path``): the same meaning in every command; ``-`` is stdout.
    ``aliases`` keep an older spelling working (quantize's ``--report``)."""
    return click.option("--json", *aliases, "json_path", metavar="PATH",
                        type=click.Path(dir_okay=False, allow_dash=True), help=help)


def warmup_option(default: int = 3, help: str = "Untimed runs before timing.") -> Decorator:
    """``--warmup N``: N untimed runs before anything is timed (0: none), in every command."""
    return click.option("--warmup", default=default, show_default=True, type=click.IntRange(min=0), help=help)


def runs_option(default: int = 20, help: str = "Timed runs after the warm-up.") -> Decorator:
    return click.option("--runs", default=default, show_default=True, type=click.IntRange(min=1), help=help)


def isolate_option() -> Decorator:
    """``--isolate``: compile and run the backend in a worker process (a crash is an error, not the end)."""
    return click.option("--isolate", is_flag=True,
                        help="Run the backend in a worker process: a crash becomes an error naming the signal.")


def timeout_option() -> Decorator:
    """``--timeout SECONDS``: bound each compile and run (implies --isolate: an SDK call cannot be interrupted)."""
    return click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                        help="Give up on a compile or run after SECONDS (implies --isolate).")


def emit_json(data: Any, path: str | None, *, indent: int = 1) -> bool:
    """Write ``data`` as JSON to ``path`` (atomically), or print it when ``path`` is ``-``.

    Returns True when it went to stdout, so a command can skip its table then.
    """
    if not path:
        return False
    return emit_json_text(json.dumps(data, indent=indent, default=str), path)


def emit_json_text(text: str, path: str) -> bool:
    """``emit_json`` for a document already serialized (e.g. ``QuantizedModel.to_json()``)."""
    if path == "-":
        click.echo(text)
        return True
    from ..plugin import atomic_write_text

    atomic_write_text(path, text + "\n")
    return False


__all__ = ["PrecisionChoice", "backend_options_option", "dims_option", "emit_json", "emit_json_text", "inputs_option",
           "isolate_option", "json_option", "precision_option", "runs_option", "seed_option", "target_option",
           "timeout_option", "warmup_option"]
