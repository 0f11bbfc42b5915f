"""``sluiceway source``: the Jira-shaped demo source, or the tables of any catalog."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.catalog import load_catalog
from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import PostgresSettings
from sluiceway.devstack.catalog_churn import churn_catalog
from sluiceway.devstack.catalog_seed import CatalogSeedPlan, seed_catalog
from sluiceway.devstack.churn import churn
from sluiceway.devstack.churn_run import ChurnSettings, ChurnSummary
from sluiceway.devstack.seed import SeedPlan, seed

app = typer.Typer(no_args_is_help=True)


@app.command("seed")
@friendly_errors
def seed_cmd(
    tenants: int = typer.Option(
        3, min=1, help="How many tenants (tenant-001, tenant-002...; with --catalog 1, 2...)."
    ),
    issues_per_tenant: int = typer.Option(100, min=1, help="Issues per tenant."),
    seed_value: int = typer.Option(
        7, "--seed", help="Random seed; the same seed gives the same rows."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print rows per table as JSON."),
    catalog: Path | None = typer.Option(
        None,
        "--catalog",
        metavar="FILE",
        help="Create and fill the tables of this catalog (e.g. examples/helpdesk/catalog.yaml) "
        "instead of the Jira-shaped demo.",
    ),
    rows_per_tenant: int = typer.Option(
        20, min=1, help="With --catalog: rows per entity and tenant."
    ),
) -> None:
    """Fill the source database deterministically (replaces those tenants' rows)."""
    if catalog is not None:
        _seed_catalog(catalog, CatalogSeedPlan(tenants, rows_per_tenant, seed_value), as_json)
        return
    plan = SeedPlan(tenants, issues_per_tenant, seed_value)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("seeding tenants", total=tenants)
        counts = seed(PostgresSettings(), plan, Codec(), lambda n: bar.advance(task, n))
    _print_seed(plan.tenant_ids(), counts, as_json)


def _seed_catalog(path: Path, plan: CatalogSeedPlan, as_json: bool) -> None:
    catalog = load_catalog(path)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("seeding tenants", total=plan.tenants)
        found, counts = seed_catalog(
            PostgresSettings(), catalog, plan, lambda n: bar.advance(task, n)
        )
    _print_seed(list(found.texts), counts, as_json)


def _print_seed(tenants: list[str], counts: dict[str, int], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"tenants": tenants, "rows": counts}))
        return
    table = Table("table", "rows", title=f"seeded {len(tenants)} tenants")
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


@app.command("status")
@friendly_errors
def status_cmd(
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Wait until capture has published its snapshot and confirmed every transaction "
        "committed before this command started (an export started then holds them).",
    ),
    timeout: float = typer.Option(600.0, min=0, help="With --wait: give up after this long (s)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Where capture of the source stands: its slot, its snapshot, how far it is behind."""
    from sluiceway.common.settings import KafkaSettings
    from sluiceway.producers.config import CaptureTuning
    from sluiceway.producers.status import capture_status, insert_lsn, wait_caught_up

    kafka, pg, slot = KafkaSettings(), PostgresSettings(), CaptureTuning().slot
    if wait:
        found = wait_caught_up(kafka, pg, slot, timeout)
    else:
        found = capture_status(kafka, pg, slot, insert_lsn(pg))
    typer.echo(json.dumps(found.to_dict()) if as_json else found.line())


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
    catalog: Path | None = typer.Option(
        None,
        "--catalog",
        metavar="FILE",
        help="Churn the tables of this catalog (seeded with source seed --catalog); each "
        "ledger line's id is then the record key as a JSON array.",
    ),
) -> None:
    """Insert, update and delete rows at a steady rate, recording each commit in a ledger."""
    settings = ChurnSettings(rate, seconds, seed_value, ledger, _tenant_list(tenants))
    entities = load_catalog(catalog) if catalog is not None else None
    columns = (TextColumn("churning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        task = bar.add_task("churn", total=settings.batches * settings.batch_size)

        def advance(n: int) -> None:
            bar.advance(task, n)

        pg = PostgresSettings()
        if entities is None:
            summary = churn(pg, settings, Codec(), advance)
        else:
            summary = churn_catalog(pg, settings, entities, advance)
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
