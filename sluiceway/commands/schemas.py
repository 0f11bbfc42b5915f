"""``sluiceway schemas``: the entity schemas derived from a catalog."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import typer

from sluiceway.cli import friendly_errors
from sluiceway.common.catalog import load_catalog
from sluiceway.common.catalog_schemas import write_entity_schemas
from sluiceway.common.errors import ConfigError
from sluiceway.common.resources import example_catalog, schema_dir

app = typer.Typer(no_args_is_help=True)


def default_out() -> Path:
    """The shipped schemas folder: ``schemas/`` of a checkout (an editable install), never
    the folder inside an installed package."""
    out = schema_dir().resolve()
    installed = {sysconfig.get_path(k) for k in ("purelib", "platlib")} - {None}
    if any(out.is_relative_to(Path(p).resolve()) for p in installed):
        raise ConfigError(
            f"--out is needed: the default, {out}, belongs to the installed package; "
            "give the folder the .avsc files go to"
        )
    return out


@app.command("generate")
@friendly_errors
def generate(
    catalog: Path | None = typer.Option(
        None,
        "--catalog",
        help="Catalog YAML (or a config file with a catalog: section); "
        "default: the Jira example (examples/jira/catalog.yaml).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the .avsc files; default: schemas/ of this checkout."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the files written as JSON."),
) -> None:
    """Write each entity's Avro record (<namespace>.<Entity>.avsc), derived from the
    catalog's column types (docs/types.md). Files already current are left untouched."""
    source = catalog or example_catalog("jira")
    written = write_entity_schemas(load_catalog(source), out or default_out())
    if as_json:
        typer.echo(json.dumps({"catalog": str(source), "files": [str(p) for p in written]}))
        return
    for path in written:
        typer.echo(str(path))
