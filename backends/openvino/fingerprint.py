"""What an exported blob computes, as one digest, so a blob altered after saving is caught on load.

The artifact's hashes catch an edited file, but not one whose hash was recomputed: a blob with a
zeroed stretch still imports and silently returns other numbers (max abs diff 0.03 on the MLP).
At save the imported blob runs one seeded random feed and the outputs' sha256 goes in the
manifest; at load the imported blob runs it again and a different digest means the blob is not
what was saved, so the IR is compiled instead and provenance says why.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

import portarun


def digest(compiled: Any, inputs: tuple, fed: dict[str, int]) -> str | None:
    """sha256 of ``compiled``'s outputs on seeded random feeds (None when the model cannot run them)."""
    try:
        feeds = portarun.random_feeds(inputs, seed=0)
        request = compiled.create_infer_request()
        results = request.infer({fed[k]: v for k, v in feeds.items() if k in fed}, share_outputs=False)
    except Exception:  # feeds the model refuses (e.g. index ranges): no fingerprint, nothing checked
        return None
    h = hashlib.sha256()
    for port in compiled.outputs:
        h.update(np.ascontiguousarray(results[port]).tobytes())
    return h.hexdigest()


__all__ = ["digest"]
