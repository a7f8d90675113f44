"""OpenVINO backend (being built)."""
