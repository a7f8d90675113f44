"""Text in, text out: a prompt through a local Hugging Face tokenizer, ``portarun.generate``, and back.

The tokenizer is read offline from a folder (``tokenizer.json``, as ``save_pretrained`` writes it)
or the file itself. The end-of-sequence id comes from, in order: the caller, the folder's
``generation_config.json`` / ``config.json`` (``eos_token_id``), or a special token the tokenizer
knows (``</s>``, ``<|endoftext|>``, ``<eos>``, ``<|eot_id|>``, ``<|im_end|>``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .backend import Executable
from .errors import InputError
from .generate import GenerationResult, Sampling, generate
from .text_feeds import load_tokenizer, read_texts

EOS_TOKENS = ("</s>", "<|endoftext|>", "<eos>", "<|eot_id|>", "<|im_end|>")


@dataclass
class TextGeneration:
    prompt: str
    text: str  # the generated continuation, decoded
    tokens: list[int]  # the generated ids (eos included when it stopped there)
    prompt_tokens: list[int]
    stopped_at_eos: bool
    result: GenerationResult

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "text": self.text, "tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "stopped_at_eos": self.stopped_at_eos, "timings": self.timings()}

    def timings(self) -> dict[str, Any]:
        r = self.result
        total = r.total_s
        return {"ttft_ms": r.ttft_s * 1e3, "tpot_median_ms": r.tpot_median_s * 1e3, "tpot_p99_ms": r.tpot_p99_s * 1e3,
                "decode_tokens_per_s": r.decode_tokens_per_s,
                "tokens_per_s": len(self.tokens) / total if total > 0 else float("nan"),
                "generated_tokens": len(self.tokens), "cache": r.cache, "capacity": r.capacity}


def eos_ids(tokenizer_path: str | os.PathLike, tokenizer) -> list[int]:
    """End-of-sequence ids for the model beside ``tokenizer_path`` (see the module docstring)."""
    folder = Path(tokenizer_path)
    folder = folder if folder.is_dir() else folder.parent
    for name in ("generation_config.json", "config.json"):
        file = folder / name
        if file.is_file():
            try:
                value = json.loads(file.read_text(encoding="utf-8")).get("eos_token_id")
            except (OSError, ValueError, AttributeError):
                continue
            if value is not None:
                return [int(v) for v in (value if isinstance(value, list) else [value])]
    found = [tokenizer.token_to_id(t) for t in EOS_TOKENS]
    return [i for i in found if i is not None]


def generate_text(executable: Executable, tokenizer: str | os.PathLike, prompt: str | None = None, *,
                  prompt_file: str | os.PathLike | None = None, max_new_tokens: int = 64,
                  sampling: Sampling | None = None, eos_token_id: int | Sequence[int] | None = None,
                  stop_at_eos: bool = True, cache: str = "auto", bucket: int = 128,
                  names: Any = None) -> TextGeneration:
    """Encode ``prompt`` (or the text of ``prompt_file``), generate, decode the new tokens."""
    if prompt is None:
        texts = read_texts(None, prompt_file) if prompt_file is not None else []
        if not texts:
            raise InputError("no prompt given", hint="--prompt 'text' or --prompt-file FILE")
        prompt = "\n".join(texts)
    tok = load_tokenizer(tokenizer)
    ids = tok.encode(prompt).ids
    if not ids:
        raise InputError(f"the prompt {prompt!r} encodes to no tokens", hint="give a longer prompt")
    stops = None
    if stop_at_eos:
        stops = list(eos_token_id) if isinstance(eos_token_id, (list, tuple)) else (
            [eos_token_id] if eos_token_id is not None else eos_ids(tokenizer, tok))
    result = generate(executable, [ids], max_new_tokens, cache=cache, bucket=bucket,
                      eos_token_id=stops or None, sampling=sampling, names=names)
    new = [int(t) for t in result.tokens[0]]
    at_eos = bool(stops) and bool(new) and new[-1] in stops
    text = tok.decode(new[:-1] if at_eos else new, skip_special_tokens=True)
    return TextGeneration(prompt, text, new, list(ids), at_eos, result)
