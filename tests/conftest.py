"""Shared fixtures. Every test run gets its own portarun cache directory."""

from __future__ import annotations

import os
import tempfile

import pytest

# Keep caches (EP engines, generated node-test data) out of the user's home during tests.
os.environ.setdefault("PORTARUN_CACHE_DIR", tempfile.mkdtemp(prefix="portarun-test-cache-"))


@pytest.fixture(scope="session")
def builtin_models():
    """name -> Model for every built-in model, built once per session."""
    from portarun import models

    return {name: models.build(name) for name in models.names(kind="model")}


@pytest.fixture
def builtin_feeds():
    """feeds(model_name, seed=0) -> seeded random feeds with the built-in's default dims."""
    import portarun
    from portarun import models

    def make(name: str, seed: int = 0, **dims):
        entry = models.get(name)
        return portarun.random_feeds(models.build(name).inputs, seed=seed, dims={**entry.default_dims, **dims})

    return make
