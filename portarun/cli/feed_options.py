"""The options that say where a command's feeds come from, shared by run, compare, conformance, bench,
quantize and plan: the user's data (--inputs FILE.npz or a folder, --input NAME=FILE.npy), text
(--text/--text-file with --tokenizer), or seeded random feeds sized by --dim. The library does the
work (``portarun.samples.feeds_for``); this module parses and prints."""

from __future__ import annotations

from typing import Any, Callable

import click

from ._common import parse_dims, parse_key_values

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def feed_source_options(*, text: bool = True, prefix: str = "") -> Decorator:
    """--inputs, --input and (with ``text``) --text/--text-file/--tokenizer. ``prefix`` names a second
    set (quantize's ``--eval``): ``--eval-inputs`` ..., parameters ``eval_inputs`` ..."""
    dash, under = (f"{prefix}-", f"{prefix}_") if prefix else ("", "")
    options = [
        click.option(f"--{dash}inputs", f"{under}inputs_path", type=click.Path(exists=False), metavar="FILE.npz|DIR",
                     help="Feeds from an .npz (one array per input; a leading sample axis or 'I/NAME' keys give "
                          "several samples) or a folder of .npz samples."),
        click.option(f"--{dash}input", f"{under}input_files", multiple=True, metavar="NAME=FILE.npy",
                     help="One input from a .npy file (repeatable)."),
    ]
    if text:
        options += [
            click.option(f"--{dash}text", f"{under}texts", multiple=True, metavar="TEXT",
                         help="Text for a text model (repeatable; tokenized with --tokenizer)."),
            click.option(f"--{dash}text-file", f"{under}text_file", type=click.Path(dir_okay=False), metavar="FILE",
                         help="Texts, one per line."),
            click.option(f"--{dash}tokenizer", f"{under}tokenizer", type=click.Path(), metavar="DIR|tokenizer.json",
                         help="A Hugging Face tokenizer (folder or file) for --text/--text-file; read offline."),
        ]

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def feeds_from_options(model: Any, *, inputs_path: str | None = None, input_files: tuple[str, ...] = (),
                       texts: tuple[str, ...] = (), text_file: str | None = None, tokenizer: str | None = None,
                       dims: tuple[str, ...] = (), seed: int = 0, count: int = 1, quiet: bool = False):
    """The FeedSet the options describe, for ``model`` (a Model or Executable); prints its notes to stderr."""
    from ..samples import feeds_for

    feeds = feeds_for(model, data=inputs_path, inputs=parse_key_values(input_files, "--input") or None,
                      texts=list(texts) or None, text_file=text_file, tokenizer=tokenizer,
                      dims=parse_dims(dims) or None, seed=seed, count=count)
    if not quiet:
        for line in feeds.notes:
            click.echo(line, err=True)
    return feeds


def has_user_feeds(inputs_path: str | None = None, input_files: tuple[str, ...] = (), texts: tuple[str, ...] = (),
                   text_file: str | None = None, **_: Any) -> bool:
    return bool(inputs_path or input_files or texts or text_file)
