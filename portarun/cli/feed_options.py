"""Where a command's feeds come from, shared by run, compare, conformance, bench and quantize: the
user's data (--inputs FILE.npz or a folder, --input NAME=FILE.npy), text (--text/--text-file with
--tokenizer), or seeded random feeds that respect the graph, sized by --dim. The library does the
work (``portarun.samples.feeds_for``); this module parses and prints."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import click

from ._common import parse_key_values
from .options import inputs_option

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def feed_source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--inputs, --input, --text, --text-file, --tokenizer (parameters inputs_npz, input_files, texts,
    text_file, tokenizer)."""
    options = [
        inputs_option(),
        click.option("--input", "input_files", multiple=True, metavar="NAME=FILE.npy",
                     help="One input from a .npy file (repeatable)."),
        click.option("--text", "texts", multiple=True, metavar="TEXT",
                     help="Text for a text model (repeatable), tokenized with --tokenizer into input_ids, "
                          "attention_mask, token_type_ids."),
        click.option("--text-file", type=click.Path(dir_okay=False), metavar="FILE", help="Texts, one per line."),
        click.option("--tokenizer", type=click.Path(), metavar="DIR|tokenizer.json",
                     help="A Hugging Face tokenizer (folder or file) for --text/--text-file; read offline."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


FEED_KEYS = ("inputs_npz", "input_files", "texts", "text_file", "tokenizer")


def has_user_feeds(values: Mapping[str, Any]) -> bool:
    return bool(values.get("inputs_npz") or values.get("input_files") or values.get("texts") or values.get("text_file"))


def feeds_from_options(model: Any, values: Mapping[str, Any], *, dims: Mapping[str, int] | None = None,
                       default_dims: Mapping[str, int] | None = None, seed: int = 0, count: int = 1,
                       quiet: bool = False) -> Any:
    """The FeedSet the feed options in ``values`` describe for ``model`` (a Model or an Executable).

    ``dims`` are the user's --dim sizes (refused with data, validated against the model);
    ``default_dims`` (a built-in's) size random feeds only. Notes go to stderr."""
    from ..samples import feeds_for

    given = has_user_feeds(values)
    feeds = feeds_for(model, data=values.get("inputs_npz"),
                      inputs=parse_key_values(values.get("input_files") or (), "--input") or None,
                      texts=list(values.get("texts") or ()) or None, text_file=values.get("text_file"),
                      tokenizer=values.get("tokenizer"),
                      dims=dict(dims or {}) if given else {**(default_dims or {}), **(dims or {})},
                      seed=seed, count=count)
    if not quiet:
        for line in feeds.notes:
            click.echo(line, err=True)
    return feeds
