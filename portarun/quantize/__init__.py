"""Vendor-neutral quantization (INT8 / INT4 QDQ). Being built: see issue "Quantization"."""
