"""What every CLI command shares: error handling, exit codes, option parsing, tables.
The shared option definitions themselves are in ``options.py``."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import click

from ..errors import PortarunError
from ..tables import table  # noqa: F401 - the commands import it from here

EXIT_FAILED = 1


class lazy:  # noqa: N801 - used like the imported name it stands for
    """``name`` from ``module`` (relative to ``portarun``), imported on first use: command modules load
    for every ``--help``, and ``portarun.api`` imports onnx (over a second)."""

    def __init__(self, module: str, name: str):
        self._where = (module, name)
        self._value: Any = None

    def _get(self) -> Any:
        if self._value is None:
            import importlib

            module, name = self._where
            self._value = getattr(importlib.import_module(module, "portarun"), name)
        return self._value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._get(), attr)


class PortarunGroup(click.Group):
    """Turns PortarunError into one line on stderr and its exit code (no traceback unless --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PortarunError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # an unexpected bug: still one line, traceback with --debug
            if _debug(ctx):
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(EXIT_FAILED)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug")) or "--debug" in sys.argv[1:2]


def parse_key_values(items: Sequence[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` pairs from repeated options; a malformed one is a usage error."""
    result = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0]:
            raise click.BadParameter(f"expected NAME=VALUE, got '{item}'", param_hint=what)
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """Backend options from ``--option key=value``; values are parsed as JSON when they can be."""
    import json

    options: dict[str, Any] = {}
    for key, value in parse_key_values(items, "--option").items():
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def parse_dims(items: Sequence[str]) -> dict[str, int]:
    dims = {}
    for key, value in parse_key_values(items, "--dim").items():
        try:
            dims[key] = int(value)
        except ValueError:
            raise click.BadParameter(f"dim '{key}' must be an integer, got '{value}'", param_hint="--dim") from None
    return dims


