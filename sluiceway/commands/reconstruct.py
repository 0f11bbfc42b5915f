"""``sluiceway reconstruct``: one table as of a run, from a lake's full export and deltas."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.settings import S3Settings

# Fewer files than this are checked in the blink of an eye: no bar.
BAR_FROM_FILES = 20

OUT_HELP = (
    "Where the table goes: a Parquet file (out.parquet, file:///abs/out.parquet, "
    "s3://bucket/key.parquet); a DuckDB table (duckdb:///abs/file.db#table); or a "
    "PostgreSQL table (postgresql://user[:password]@host:port/db#schema.table). Without "
    "#..., the table is named after --table. Written under a temporary name (or in one "
    "transaction) and committed at the end."
)

HELP = (
    "Rebuild one table as of a run: the latest full export at or before --as-of, then every "
    "delta after it up to --as-of, in order; the highest _position per (tenant, id) wins and "
    "keys whose latest row is a delete are dropped (the README's SQL, run in DuckDB)."
    "\n\n"
    "Output columns: tenant_id (from _tenant_id) and the entity's columns, as in the source "
    "table; --with-metadata appends the lake's metadata columns. The chain, every listed file "
    "and its row count, and the target are checked before anything is written."
)


@friendly_errors
def reconstruct(
    dest: str = typer.Option(..., "--dest", help="The lake: a directory or s3://bucket/prefix."),
    table: str = typer.Option(..., "--table", help="An entity of the catalog."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Reconstruct as of this run (an etl_id); default: the latest run."
    ),
    out: str = typer.Option(..., "--out", help=OUT_HELP),
    with_metadata: bool = typer.Option(
        False, "--with-metadata", help="Also keep the lake's _op, _position, ... columns."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    from sluiceway.tools.reconstruct import engine

    job = engine.prepare(dest, table, as_of, out, S3Settings(), with_metadata)
    files = len(job.plan.files)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True, disable=as_json or files < BAR_FROM_FILES,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"checking {files} files", total=files)
        checked = engine.check(job, lambda n: bar.advance(task, n))
    result = engine.run(checked)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _report(result)


def _report(result: dict[str, Any]) -> None:
    table = Table(
        "etl_id", "type", "files", "rows", title=f"{result['table']} as of {result['as_of']}"
    )
    for run in result["runs"]:
        table.add_row(run["etl_id"], run["type"], str(run["files"]), str(run["rows"]))
    console = Console()
    console.print(table)
    console.print(
        f"{result['rows_out']} rows from {result['rows_in']} lake rows -> {result['target']}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("reconstruct", help=HELP)(reconstruct)
