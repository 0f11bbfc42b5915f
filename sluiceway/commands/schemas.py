"""``sluiceway schemas``: the entity schemas derived from a catalog."""

from __future__ import annotations

import json
from pathlib import Path

import typer

import sluiceway
from sluiceway.cli import friendly_errors
from sluiceway.common.catalog import load_catalog
from sluiceway.common.catalog_schemas import write_entity_schemas
from sluiceway.common.errors import ConfigError
from sluiceway.common.resources import schema_dir

app = typer.Typer(no_args_is_help=True)


def checkout_root() -> Path | None:
    """The source checkout this Sluiceway runs from, or None for an installed wheel."""
    root = Path(sluiceway.__file__).resolve().parents[1]
    return root if (root / "examples" / "jira" / "catalog.yaml").is_file() else None


def _default(given: Path | None, option: str, in_checkout: str) -> Path:
    if given is not None:
        return given
    root = checkout_root()
    if root is None:
        raise ConfigError(f"{option} is needed outside a source checkout of Sluiceway")
    return schema_dir() if in_checkout == "schemas" else root / in_checkout


@app.command("generate")
@friendly_errors
def generate(
    catalog: Path | None = typer.Option(
        None,
        "--catalog",
        help="Catalog YAML (or a config file with a catalog: section); "
        "default: the Jira example, examples/jira/catalog.yaml.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the .avsc files; default: the checkout's schemas/."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the files written as JSON."),
) -> None:
    """Write each entity's Avro record (<namespace>.<Entity>.avsc), derived from the
    catalog's column types (docs/types.md). Files already current are left untouched."""
    source = _default(catalog, "--catalog", "examples/jira/catalog.yaml")
    folder = _default(out, "--out", "schemas")
    written = write_entity_schemas(load_catalog(source), folder)
    if as_json:
        typer.echo(json.dumps({"catalog": str(source), "files": [str(p) for p in written]}))
        return
    for path in written:
        typer.echo(str(path))
