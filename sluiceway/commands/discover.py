"""``sluiceway source discover``: write an entity catalog from the source database's own
catalog, and list what could not be mapped and why."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.errors import ConfigError
from sluiceway.common.pgtypes import unmappable_reason
from sluiceway.common.settings import PostgresSettings
from sluiceway.tools.discover import Discovery, Rule, discover


def _names(values: list[str]) -> tuple[str, ...]:
    """Repeated options and comma-separated lists alike."""
    return tuple(dict.fromkeys(v.strip() for text in values for v in text.split(",") if v.strip()))


def _header(pg: PostgresSettings, rule: Rule) -> str:
    how = (
        f"--tenant-column {json.dumps(rule.tenant_column)}"
        if rule.tenant_column is not None
        else f"--schema-per-tenant {json.dumps(rule.schema_pattern)}"
    )
    return (
        f"# Discovered by `sluiceway source discover {how}` from PostgreSQL database\n"
        f"# {json.dumps(pg.dbname)} at {pg.host}:{pg.port} (as {json.dumps(pg.user)}).\n"
        "# Edit it freely: drop entities, add columns to `exclude`, rename entities (and the\n"
        "# references to them); `sluiceway check` holds it against the database.\n"
    )


def discover_cmd(
    tenant_column: str | None = typer.Option(
        None, "--tenant-column", metavar="C", help="Take every table that has column C."
    ),
    schema_per_tenant: str | None = typer.Option(
        None,
        "--schema-per-tenant",
        metavar="PATTERN",
        help="Take the tables of the schemas this regex matches; its first group is the tenant.",
    ),
    schemas: list[str] = typer.Option(
        [],
        "--schemas",
        metavar="NAMES",
        help="Schemas to look in (repeat or comma-separate); default: all.",
    ),
    tables: list[str] = typer.Option(
        [],
        "--tables",
        metavar="NAMES",
        help="Only these tables: names or globs, `name` or `schema.name`.",
    ),
    updated_column: str | None = typer.Option(
        None,
        "--updated-column",
        metavar="C",
        help="Column saying when a row changed; default: the first of updated, updated_at, "
        "modified, modified_at, last_modified that is a timestamp or date.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the catalog here, not stdout."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Write an entity catalog of the source database's tables (with their keys, foreign
    keys, types and comments), and list what could not be mapped and why."""
    from sluiceway.producers.db import connect

    rule = Rule(tenant_column, schema_per_tenant, _names(tables), updated_column)
    pg = PostgresSettings()
    with closing(connect(pg)) as conn:
        conn.set_session(readonly=True, autocommit=True)
        found = discover(conn, rule, schemas=_names(schemas), unmapped=unmappable_reason)
    text = _header(pg, rule) + found.catalog.to_yaml()
    if out is not None:
        try:
            out.write_text(text)
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot write it ({exc.strerror})") from None
    _show(found, out, text, as_json)


def _show(found: Discovery, out: Path | None, text: str, as_json: bool) -> None:
    if as_json:
        payload: dict[str, object] = {
            "out": None if out is None else str(out),
            "entities": list(found.catalog.entities),
            "not_mapped": [{"where": w, "reason": r} for w, r in found.not_mapped],
        }
        typer.echo(json.dumps(payload if out is not None else {**payload, "catalog": text}))
        return
    if out is None:
        typer.echo(text, nl=False)
    console = Console(stderr=out is None)  # stdout holds the catalog when there is no --out
    if found.not_mapped:
        table = Table("where", "not captured as it stands, because", title="not mapped")
        for where, reason in found.not_mapped:
            table.add_row(where, reason)
        console.print(table)
    where = "" if out is None else f" to {out}"
    console.print(f"wrote {len(found.catalog.entities)} entities{where}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("discover")(friendly_errors(discover_cmd))
