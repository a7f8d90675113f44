"""Artifact payload: every compiled shape signature as a serialized ``jax.export`` module.

``jax.export`` serializes the lowered StableHLO with JAX's calling-convention
version (a flatbuffer, no pickle), so loading an artifact skips the ONNX
lowering and tracing and only runs XLA's compile. JAX can also serialize the
compiled XLA executable itself (``jax.experimental.serialize_executable``), but
that format is a pickle: loading one from a file would execute code from it,
so portarun does not. The manifest keys the payload by jax version and device
kind; a mismatch is refused (or rebuilt from the stored model with ``--rebuild``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from portarun.plugin import ArtifactCorruptError, atomic_file, payload_file

from . import jaxenv
from .program import Compiled
from .quant.native import TARGET as NATIVE_TARGET

INDEX = "signatures.json"


def save_exports(program, directory: Path) -> dict[str, Any]:
    jax = jaxenv.jax_module()
    from jax import export

    entries = []
    weight_specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in program.weights.items()}
    for index, (key, compiled) in enumerate(sorted(program._cache.items(), key=lambda kv: str(kv[0]))):
        if compiled.eager:
            continue
        specs = tuple(jax.ShapeDtypeStruct(shape, np.dtype(dtype) if dtype != "bfloat16" else jax.numpy.bfloat16)
                      for shape, dtype in key)
        with jaxenv.x64():  # portarun's own CPU kernel is the one custom call a program may hold
            exported = export.export(program._jitted, disabled_checks=[
                export.DisabledSafetyCheck.custom_call(NATIVE_TARGET)])(weight_specs, specs)
        name = f"signature-{index}.jaxexport"
        with atomic_file(directory / name) as handle:
            handle.write(bytes(exported.serialize()))
        entries.append({"file": name, "inputs": [[list(shape), dtype] for shape, dtype in key]})
    with atomic_file(directory / INDEX, "w") as handle:
        json.dump(entries, handle, indent=2)
    device = program.device
    return {"format": "jax.export", "index": INDEX, "signatures": len(entries),
            "jax_version": jax.__version__, "device_kind": device.device_kind, "platform": device.platform,
            # the stored programs read the weights in this form's layout: a load must lay them out alike
            "quantized_matmul": program.quantized_matmul}


def load_exports(program, directory: Path, payload: dict[str, Any]) -> int:
    jax = jaxenv.jax_module()
    from jax import export

    index_path = payload_file(directory, payload.get("index", INDEX))
    try:
        entries = json.loads(index_path.read_text())
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("inputs"), list)
                                                    for e in entries):
            raise ValueError("not a list of {file, inputs} entries")
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactCorruptError(f"cannot read {index_path}: {exc}", hint="recompile the artifact") from None
    loaded = 0
    for entry in entries:
        key = tuple((tuple(shape), dtype) for shape, dtype in entry["inputs"])
        if key in program._cache:
            continue
        data = payload_file(directory, entry.get("file")).read_bytes()
        start = time.perf_counter()
        exported = export.deserialize(bytearray(data))
        specs = tuple(jax.ShapeDtypeStruct(shape, exported.in_avals[len(program.weights) + i].dtype)
                      for i, (shape, _) in enumerate(key))
        with jaxenv.x64():
            compiled = jax.jit(exported.call).lower(program.weights, specs).compile()
        program._cache[key] = Compiled(compiled, time.perf_counter() - start)
        program.stats.signatures.append("loaded: " + ", ".join(str(list(s)) for s, _ in key))
        loaded += 1
    return loaded
