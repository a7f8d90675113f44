"""Feeds for text models: sentences through a Hugging Face tokenizer (the ``tokenizers`` package,
offline), matched to the model's inputs by name (input_ids, attention_mask, token_type_ids,
position_ids)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import InputError, ModelNotFoundError, UsageError

TOKENIZER_HINT = "pass --tokenizer with a folder holding tokenizer.json (a Hugging Face model folder) or the file itself"
IDS = re.compile(r"input_ids|^ids$|^tokens?$|token_ids", re.IGNORECASE)
MASK = re.compile(r"attention_mask|^mask$|input_mask", re.IGNORECASE)
TYPES = re.compile(r"token_type|segment", re.IGNORECASE)
POSITIONS = re.compile(r"position", re.IGNORECASE)


def load_tokenizer(path: str | os.PathLike):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` or a folder holding one; never downloads."""
    if path is None:
        raise UsageError("text feeds need a tokenizer", hint=TOKENIZER_HINT)
    location = Path(path)
    file = location / "tokenizer.json" if location.is_dir() else location
    if not file.is_file():
        raise ModelNotFoundError(f"no tokenizer at '{file}'", hint=TOKENIZER_HINT)
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ModelNotFoundError("the tokenizers package is missing", hint="pip install tokenizers") from None
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a plain Exception for a bad file
        raise InputError(f"cannot read tokenizer '{file}': {str(exc).splitlines()[0] if str(exc) else exc}",
                         hint=TOKENIZER_HINT) from None


def read_texts(texts: Iterable[str] | None = None, text_file: str | os.PathLike | None = None) -> list[str]:
    """``texts`` plus the non-empty lines of ``text_file``."""
    found = [t for t in (texts or ()) if t is not None]
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"text file '{path}' does not exist")
        try:
            found += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read '{path}' as UTF-8 text: {exc}") from None
    if not found:
        raise InputError("no text given", hint="--text 'a sentence' (repeatable) or --text-file FILE (one per line)")
    return found


def _fixed_length(specs) -> int | None:
    for spec in specs:
        if IDS.search(spec.name) and spec.shape and len(spec.shape) >= 2 and isinstance(spec.shape[-1], int):
            return spec.shape[-1]
    return None


def _fixed_batch(specs) -> int | None:
    for spec in specs:
        if IDS.search(spec.name) and spec.shape and isinstance(spec.shape[0], int):
            return spec.shape[0]
    return None


def encode(source: Any, texts: list[str], tokenizer, max_length: int | None = None) -> list[dict[str, np.ndarray]]:
    """Samples for ``source``'s inputs (Model, Executable or TensorSpecs) from ``texts``.

    All texts form one batch, padded to the longest, unless the model fixes its batch at 1 (then one
    sample per text); a fixed sequence length pads or truncates every text to it.
    """
    from .samples import _specs

    specs = _specs(source)
    length = _fixed_length(specs) or max_length
    pad_id = tokenizer.token_to_id("[PAD]")
    pad_id = pad_id if pad_id is not None else (tokenizer.token_to_id("<pad>") or 0)
    if length:
        tokenizer.enable_truncation(max_length=int(length))
    if _fixed_length(specs):
        tokenizer.enable_padding(pad_id=pad_id, length=int(length))
    else:
        tokenizer.enable_padding(pad_id=pad_id)
    batches = [[t] for t in texts] if _fixed_batch(specs) == 1 else [texts]
    samples = []
    for batch in batches:
        encodings = tokenizer.encode_batch(batch)
        columns = {"ids": [e.ids for e in encodings], "mask": [e.attention_mask for e in encodings],
                   "types": [e.type_ids for e in encodings]}
        sample = {}
        for spec in specs:
            kind = ("types" if TYPES.search(spec.name) else "mask" if MASK.search(spec.name)
                    else "positions" if POSITIONS.search(spec.name) else "ids" if IDS.search(spec.name) else None)
            if kind is None:
                raise InputError(f"input '{spec.name}' is not one a tokenizer makes (input_ids, attention_mask, "
                                 f"token_type_ids, position_ids)", hint="pass it with --input NAME=FILE.npy, or use --inputs")
            if kind == "positions":
                mask = np.array(columns["mask"])
                values = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
            else:
                values = np.array(columns[kind])
            sample[spec.name] = values.astype(spec.dtype if spec.dtype.kind in "iub" else np.int64)
        samples.append(sample)
    return samples


def text_samples(source: Any, *, texts: Iterable[str] | None = None, text_file: str | os.PathLike | None = None,
                 tokenizer: str | os.PathLike | None = None, max_length: int | None = None):
    """A checked FeedSet from text (``--text``/``--text-file``) and ``--tokenizer``."""
    from .samples import FeedSet, load_samples

    found = read_texts(texts, text_file)
    samples = encode(source, found, load_tokenizer(tokenizer), max_length)
    checked = load_samples(source, samples)
    return FeedSet(checked.samples, "text", [f"feeds: {len(found)} text(s) tokenized with {tokenizer} "
                                             f"into {len(checked)} sample(s)"])
