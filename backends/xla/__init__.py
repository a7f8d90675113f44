"""XLA backend (being built)."""
