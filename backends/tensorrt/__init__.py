"""TensorRT backend (being built)."""
