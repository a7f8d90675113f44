"""The manifest's schema, checked before any field is used: an edited or corrupt manifest is one
``ArtifactCorruptError`` naming the field, never an AttributeError/KeyError/TypeError/RecursionError
deep inside a backend.

A hand-written checker (the runtime does not depend on jsonschema): each top-level field has a
type, the required ones must be there, nesting is bounded, strings that name files must be plain
relative paths, and the fields that say the same thing twice (backend, target, precision, SDK
version in the manifest and in its provenance) must agree.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from .errors import ArtifactCorruptError, PortarunError
from .types import Precision, Target, TensorSpec

MAX_DEPTH = 32
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NUMBER = (int, float)

# field -> (accepted types, required)
FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema": ((str,), True),
    "portarun_version": ((str,), False),
    "created": ((str,), False),
    "model_name": ((str, type(None)), False),
    "model_sha256": ((str,), False),
    "backend": ((str,), True),
    "sdk_version": ((str,), True),
    "target": ((str,), True),
    "precision": ((str,), True),
    "options": ((dict,), False),
    "inputs": ((list,), True),
    "outputs": ((list,), True),
    "provenance": ((dict,), False),
    "payload": ((dict,), False),
    "files": ((dict,), True),
}
PROVENANCE_FIELDS: dict[str, tuple[type, ...]] = {
    "backend": (str,), "sdk_version": (str,), "target": (str,), "device": (str,), "precision": (str,),
    "providers": (list,), "compile_seconds": (*_NUMBER, type(None)), "details": (dict,),
}


def _corrupt(where: str, what: str) -> ArtifactCorruptError:
    return ArtifactCorruptError(f"{where}: {what}", hint="the manifest was edited or is corrupt; recompile the artifact")


def depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (a 10,000-deep list must not overflow)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def relative_name(name: Any, where: str) -> str:
    """``name`` as a plain relative POSIX path (no absolute path, '..', backslash, NUL or empty part)."""
    if not isinstance(name, str) or not name:
        raise _corrupt(where, f"file name {name!r} is not a non-empty string")
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name) \
            or any(p in ("..", ".", "") for p in parts) or PurePosixPath(name).is_absolute():
        raise _corrupt(where, f"'{name[:120]}' points outside the artifact (only plain relative paths inside it)")
    return name


def validate(raw: Any, where: str) -> dict[str, Any]:
    """``raw`` checked against the schema; returns it. Every failure is ArtifactCorruptError."""
    if not isinstance(raw, dict):
        raise _corrupt(where, "not a JSON object")
    if depth(raw) > MAX_DEPTH:
        raise _corrupt(where, f"nested deeper than {MAX_DEPTH} levels")
    for key, (types, required) in FIELDS.items():
        if key not in raw:
            if required:
                raise _corrupt(where, f"lacks '{key}'")
            continue
        if not isinstance(raw[key], types) or isinstance(raw[key], bool) and bool not in types:
            raise _corrupt(where, f"'{key}' is {type(raw[key]).__name__}, expected "
                                  f"{' or '.join(t.__name__ for t in types)}")
    _parse(where, "target", lambda: Target.parse(raw["target"]))
    precision = _parse(where, "precision", lambda: Precision.parse(raw["precision"]))
    for side in ("inputs", "outputs"):
        for index, spec in enumerate(raw[side]):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                    or not isinstance(spec.get("shape", []), (list, type(None))) \
                    or any(not isinstance(d, (int, str, type(None))) or isinstance(d, bool)
                           for d in (spec.get("shape") or [])):
                raise _corrupt(where, f"{side}[{index}] is not a tensor spec (name, dtype, shape)")
            _parse(where, f"{side}[{index}]", lambda spec=spec: TensorSpec.from_dict(spec))
    for name, digest in raw["files"].items():
        relative_name(name, f"{where} 'files'")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise _corrupt(where, f"files['{name[:80]}'] is not a sha256 hex digest")
    for key, value in (raw.get("payload") or {}).items():
        if isinstance(value, str) and ("/" in value or "\\" in value or value.startswith(".")
                                       or "\x00" in value) and key.endswith(_FILE_KEYS):
            relative_name(value, f"{where} payload['{key}']")
    _check_provenance(raw, precision, where)
    return raw


# payload keys whose values name files (ir, blob, optimized_model, engine, timing_cache, index)
_FILE_KEYS = ("ir", "blob", "model", "engine", "cache", "index", "file")


def _check_provenance(raw: dict[str, Any], precision: Precision, where: str) -> None:
    provenance = raw.get("provenance")
    if provenance is None:
        return
    for key, types in PROVENANCE_FIELDS.items():
        if key in provenance and (not isinstance(provenance[key], types)
                                  or isinstance(provenance[key], bool) and bool not in types):
            raise _corrupt(where, f"provenance '{key}' is {type(provenance[key]).__name__}")
    unknown = sorted(set(provenance) - set(PROVENANCE_FIELDS))
    if unknown:
        raise _corrupt(where, f"provenance has unknown field(s) {', '.join(map(str, unknown[:5]))}")
    missing = [k for k in ("backend", "sdk_version", "target", "device", "precision") if k not in provenance]
    if missing:
        raise _corrupt(where, f"provenance lacks {', '.join(missing)}")
    if any(not isinstance(p, str) for p in provenance.get("providers", [])):
        raise _corrupt(where, "provenance 'providers' is not a list of strings")
    # the same fact written twice must agree: an edited manifest usually changes only one of them
    if provenance["backend"] != raw["backend"]:
        raise _corrupt(where, f"says backend {raw['backend']!r}, its provenance {provenance['backend']!r}")
    # (the SDK version is the backend's to judge: artifact_incompatibility compares it with this machine)
    try:
        reported = Precision.parse(provenance["precision"])
    except PortarunError:
        reported = None  # a backend-specific text (e.g. "f32 hint"): nothing to compare
    if reported is not None and reported is not precision:
        raise _corrupt(where, f"says precision {precision}, but what was compiled computes in {reported}")


def _parse(where: str, field: str, parse: Any) -> Any:
    try:
        return parse()
    except (PortarunError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(where, f"'{field}' does not parse ({exc})") from None


__all__ = ["FIELDS", "MAX_DEPTH", "depth", "relative_name", "validate"]
