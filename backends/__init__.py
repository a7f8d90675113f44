"""portarun's in-tree backends, one package each, registered through the
``portarun.backends`` entry-point group exactly like third-party plugins."""
