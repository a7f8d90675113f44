"""`portarun backends`: what is registered, what can run here, and how to install the rest."""

from __future__ import annotations

import click

from ._common import lazy, table
from .options import emit_json, json_option

get_backend, list_backends = lazy(".registry", "get_backend"), lazy(".registry", "list_backends")


@click.command("backends")
@json_option("Write the list as JSON to PATH ('-': stdout).")
@click.option("--options", "show_options", is_flag=True, help="Also list each backend's compile options.")
def backends(json_path: str | None, show_options: bool) -> None:
    """List every registered backend: available or not, devices, precisions, and why.

    \b
    Examples:
      portarun backends
      portarun backends --json - | jq '.[] | select(.available)'
      PORTARUN_BACKENDS=onnxruntime,reference portarun backends
    """
    infos = list_backends()
    if json_path:
        data = [info.to_dict() for info in infos]
        if show_options:
            for entry in data:
                try:
                    entry["options"] = dict(get_backend(entry["name"]).options)
                except Exception:
                    entry["options"] = {}
        if emit_json(data, json_path, indent=2):
            return
    rows = []
    for info in infos:
        devices = ", ".join(str(d.target) for d in info.devices) or "-"
        status = "yes" if info.available else "no"
        note = info.version or ""
        if not info.available:
            note = info.reason or "unavailable"
            if info.install_hint:
                note += f" -> {info.install_hint}"
        rows.append([info.name, status, devices, ",".join(info.precisions) or "-", note])
    click.echo(table(["backend", "available", "targets", "precisions", "version / reason"], rows))
    missing = [[target, hint or "-"] for info in infos for target, hint in info.missing_targets.items()]
    if missing:
        click.echo("\nTargets of available backends that cannot run here:")
        click.echo(table(["target", "what is missing / how to get it"], missing))
    if show_options:
        for info in infos:
            try:
                options = get_backend(info.name).options
            except Exception:
                continue
            click.echo(f"\n{info.name} options:")
            for key, text in options.items():
                click.echo(f"  {key}: {text}")
