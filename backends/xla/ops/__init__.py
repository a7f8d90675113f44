"""ONNX op lowerings for the XLA backend, one module per op family."""
