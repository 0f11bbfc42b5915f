"""``sluiceway config show|docs``: the merged settings, and docs/configuration.md."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sluiceway.cli import friendly_errors
from sluiceway.common.settings_base import config_path

app = typer.Typer(no_args_is_help=True)


@app.command("show")
@friendly_errors
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every setting in effect, where it came from, secrets redacted."""
    from sluiceway.config import merged

    values = merged()
    path = config_path()
    if as_json:
        payload = {
            "config_file": None if path is None else str(path),
            "settings": [v.to_dict() for v in values],
        }
        typer.echo(json.dumps(payload, default=str))
        return
    typer.echo(f"config file: {path or 'none'}")
    width = max(len(v.key) for v in values)
    for v in values:  # plain lines: greppable, and nothing is cut at a narrow terminal
        shown = "-" if v.value is None else str(v.value)
        typer.echo(f"{v.key:<{width}}  {shown}  ({v.source}; {v.env})")


@app.command("docs")
@friendly_errors
def docs(
    output: Path | None = typer.Option(None, "--output", help="Write here instead of stdout."),
) -> None:
    """Print (or write) docs/configuration.md, generated from the settings classes."""
    from sluiceway.config_docs import render

    text = render()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
