"""``sluiceway source``: the Jira-shaped demo source."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import PostgresSettings
from sluiceway.devstack.churn import ChurnSettings, ChurnSummary, churn
from sluiceway.devstack.seed import SeedPlan, seed

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


def _tenant_list(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    tenants = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not tenants:
        raise ConfigError(f"--tenants must list tenant ids separated by commas, got {text!r}")
    return tenants


@app.command("churn")
@friendly_errors
def churn_cmd(
    rate: float = typer.Option(100.0, help="Changes per second to aim for (> 0)."),
    seconds: float = typer.Option(10.0, help="How long to run, in seconds (> 0)."),
    seed_value: int = typer.Option(7, "--seed", help="Random seed of the planned changes."),
    ledger: Path = typer.Option(
        Path("churn-ledger.jsonl"), help="JSON-lines file of every committed change."
    ),
    tenants: str | None = typer.Option(
        None, help="Comma-separated tenant ids; default every tenant in the source."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Insert, update and delete rows at a steady rate, recording each commit in a ledger."""
    settings = ChurnSettings(rate, seconds, seed_value, ledger, _tenant_list(tenants))
    columns = (TextColumn("churning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        task = bar.add_task("churn", total=settings.batches * settings.batch_size)
        summary = churn(PostgresSettings(), settings, Codec(), lambda n: bar.advance(task, n))
    if as_json:
        typer.echo(json.dumps({**summary.to_json(), "ledger": str(ledger)}))
        return
    _print_churn(summary, ledger)


def _print_churn(summary: ChurnSummary, ledger: Path) -> None:
    table = Table("entity", "inserts", "updates", "deletes", title="churned changes")
    for entity, ops in summary.counts.items():
        table.add_row(entity, *(str(ops[op]) for op in ("c", "u", "d")))
    console = Console()
    console.print(table)
    console.print(
        f"{summary.changes} changes in {summary.transactions} transactions over "
        f"{summary.seconds:.2f}s: {summary.achieved_rate:.0f} changes/s "
        f"(target {summary.target_rate:g}); ledger {ledger}",
        highlight=False,
        soft_wrap=True,
    )
