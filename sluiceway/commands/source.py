"""``sluiceway source``: the Jira-shaped demo source."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from producers.seed import SeedPlan, seed
from sluiceway.cli import friendly_errors
from sluiceway.codec import Codec
from sluiceway.settings import PostgresSettings

app = typer.Typer(no_args_is_help=True)


@app.command("seed")
@friendly_errors
def seed_cmd(
    tenants: int = typer.Option(3, min=1, help="How many tenants (tenant-001, tenant-002...)."),
    issues_per_tenant: int = typer.Option(100, min=1, help="Issues per tenant."),
    seed_value: int = typer.Option(
        7, "--seed", help="Random seed; the same seed gives the same rows."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print rows per table as JSON."),
) -> None:
    """Fill the source database deterministically (replaces those tenants' rows)."""
    plan = SeedPlan(tenants, issues_per_tenant, seed_value)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("seeding tenants", total=tenants)
        counts = seed(PostgresSettings(), plan, Codec(), lambda n: bar.advance(task, n))
    if as_json:
        typer.echo(json.dumps({"tenants": plan.tenant_ids(), "rows": counts}))
        return
    table = Table("table", "rows", title=f"seeded {tenants} tenants")
    for entity, rows in counts.items():
        table.add_row(entity, str(rows))
    Console().print(table)
