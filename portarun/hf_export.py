"""Export a local Hugging Face model folder to ONNX (no hub access: local files only).

- ``feature-extraction``: an encoder (BERT, MiniLM, ...): inputs ``input_ids``,
  ``attention_mask`` (and ``token_type_ids`` when the model has them), output
  ``last_hidden_state`` [batch, sequence, hidden].
- ``text-generation``: a causal LM with its KV cache as inputs and outputs, in the
  contract ``portarun.generate`` runs: ``input_ids``, ``attention_mask``,
  ``position_ids``, ``past_key_values.{i}.key|value`` -> ``logits``, ``present.{i}.key|value``.

The example inputs used for export and validation are seeded random token ids; the
validation compares with the PyTorch model on them (``portarun.export``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .compare import Tolerance
from .errors import ExportError, ModelNotFoundError, UsageError, first_line
from .export import DEFAULT_OPSET, DEFAULT_TOLERANCE, export
from .model import Model

TASKS = ("feature-extraction", "text-generation")
HF_HINT = "pip install 'portarun[models]' (transformers, torch)"


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub: local folders only
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise ExportError(f"exporting a Hugging Face model needs transformers ({exc})", hint=HF_HINT) from None
    transformers.logging.set_verbosity_error()
    return transformers


def _check_folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise ModelNotFoundError(f"Hugging Face model folder '{folder}' not found",
                                 hint="give a local folder with config.json and the weights (no hub names)")
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"'{folder}' has no config.json, so it is not a Hugging Face model folder",
                                 hint="point --hf-path at the folder that holds config.json and the weights")
    return folder


def export_hf(path: str | os.PathLike, task: str, *, opset: int = DEFAULT_OPSET, exporter: str = "auto",
              batch: int = 2, sequence: int = 8, past: int = 3, validate: bool = True,
              tolerance: Tolerance = DEFAULT_TOLERANCE, seed: int = 0) -> Model:
    """Export the model in local folder ``path`` for ``task``; returns a validated Model."""
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'", hint=f"choose one of {', '.join(TASKS)}")
    folder = _check_folder(path)
    transformers = _transformers()
    import torch

    # Sizes of 0 or 1 would be specialized away by torch.export: use >= 2 for every dynamic axis.
    batch, sequence, past = max(batch, 2), max(sequence, 2), max(past, 2)
    loader = transformers.AutoModel if task == "feature-extraction" else transformers.AutoModelForCausalLM
    try:
        hf_model = loader.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager",
                                          dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise ExportError(f"transformers cannot load '{folder}' for {task}: {type(exc).__name__}: "
                          f"{first_line(str(exc))}",
                          hint="check the folder holds a complete model for this task") from exc
    hf_model.eval()
    rng = np.random.default_rng(seed)
    vocab = int(hf_model.config.vocab_size)
    name = folder.name
    if task == "feature-extraction":
        wrapper, inputs, outputs, axes = _encoder(torch, hf_model, rng, vocab, batch, sequence)
    else:
        wrapper, inputs, outputs, axes = _causal_lm(torch, hf_model, rng, vocab, batch, sequence, past)
    return export(wrapper, inputs, output_names=outputs, dynamic_axes=axes, opset=opset, exporter=exporter,
                  validate=validate, tolerance=tolerance, name=name)


def _mask(batch: int, total: int) -> np.ndarray:
    mask = np.ones((batch, total), dtype=np.int64)
    mask[-1, -2:] = 0  # one padded sequence, so the export keeps the masking path
    return mask


def _encoder(torch, hf_model, rng, vocab, batch, sequence):
    import inspect

    takes_types = ("token_type_ids" in inspect.signature(hf_model.forward).parameters
                   and getattr(hf_model.config, "type_vocab_size", 0) > 0)

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    inputs: dict[str, Any] = {"input_ids": torch.from_numpy(rng.integers(0, vocab, (batch, sequence))),
                              "attention_mask": torch.from_numpy(_mask(batch, sequence))}
    if takes_types:
        inputs["token_type_ids"] = torch.zeros((batch, sequence), dtype=torch.int64)
    axes = {n: {0: "batch", 1: "sequence"} for n in inputs}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    return Encoder(hf_model), inputs, ["last_hidden_state"], axes


def _causal_lm(torch, hf_model, rng, vocab, batch, sequence, past):
    from transformers import DynamicCache

    config = hf_model.config.get_text_config(decoder=True)
    layers = int(config.num_hidden_layers)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)

    class CausalLM(torch.nn.Module):
        """Flat tensors in and out: the cache becomes past_key_values.N.* inputs and present.N.* outputs."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past_kv):
            cache = DynamicCache([(past_kv[2 * i], past_kv[2 * i + 1]) for i in range(layers)])
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=cache, use_cache=True)
            present = out.cache if hasattr(out, "cache") else out.past_key_values
            flat = [out.logits]
            for layer in present.layers[:layers]:
                flat += [layer.keys, layer.values]
            return tuple(flat)

    total = past + sequence
    mask = _mask(batch, total)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)[:, past:]
    inputs: dict[str, Any] = {"input_ids": torch.from_numpy(rng.integers(0, vocab, (batch, sequence))),
                              "attention_mask": torch.from_numpy(mask),
                              "position_ids": torch.from_numpy(np.ascontiguousarray(positions))}
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
                                       "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    outputs = ["logits"]
    for i in range(layers):
        for kind in ("key", "value"):
            cache = rng.standard_normal((batch, kv_heads, past, head_dim)).astype(np.float32)
            inputs[f"past_key_values.{i}.{kind}"] = torch.from_numpy(cache)
            axes[f"past_key_values.{i}.{kind}"] = {0: "batch", 2: "past_seq"}
            outputs.append(f"present.{i}.{kind}")
            axes[f"present.{i}.{kind}"] = {0: "batch", 2: "total_seq"}
    return CausalLM(hf_model), inputs, outputs, axes
