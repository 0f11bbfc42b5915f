"""``sluiceway demo``: the whole path on a small Jira-shaped source, shown to a newcomer."""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path

import duckdb
import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.entities import active_catalog, entity_names
from sluiceway.common.kafka_io import admin
from sluiceway.common.settings import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    StackSettings,
)

console = Console()


def _reset_topics(kafka: KafkaSettings, timeout: float = 60.0) -> None:
    """Drop the demo's own topics so a second demo starts from a clean snapshot."""
    client = admin(kafka)
    names = [t for t in client.list_topics(timeout=10).topics if t.startswith(kafka.topic_prefix)]
    if not names:
        return
    for fut in client.delete_topics(names).values():
        with suppress(KafkaException):  # already being deleted
            fut.result(30)
    deadline = time.monotonic() + timeout
    while any(t in client.list_topics(timeout=10).topics for t in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo topics still present after {timeout:.0f}s")
        time.sleep(0.2)


def _show_rows(root: Path, etl_id: str) -> None:
    for entity in entity_names():
        files = sorted(root.glob(f"*/*/*/daily-export/full-export/{entity}/{etl_id}/*.parquet"))
        if not files:
            continue
        rel = files[0].parent.relative_to(root)
        # the tenant, the key and the first few other columns: what fits a terminal's width
        found = active_catalog().entity(entity)
        shown = ["_tenant_id", *found.column_names[:4]]
        key = ", ".join(str(duckdb.ColumnExpression(c)) for c in found.record_key)
        # the path is passed as a value, never spliced into SQL text (it may hold a quote)
        result = duckdb.read_parquet(f"{files[0].parent}/*.parquet")
        result = result.select(*(duckdb.ColumnExpression(c) for c in shown)).order(key).limit(3)
        table = Table(*shown, title=f"{entity}: {rel}/", title_justify="left")
        for row in result.fetchall():
            table.add_row(*(str(v)[:40].replace("\n", "\\n") for v in row))
        console.print(table)


@friendly_errors
def demo(
    dest: Path = typer.Option(Path("demo-lake"), help="Where the demo lake is written."),
    tenants: int = typer.Option(3, min=1, help="Tenants in the demo source."),
    issues: int = typer.Option(200, min=1, help="Issues per tenant."),
) -> None:
    """Start the stack, seed a source, capture it, export one tenant, show rows from the files."""
    from sluiceway import devstack as stack
    from sluiceway.common.codec import Codec
    from sluiceway.common.spec import parse_spec
    from sluiceway.control.runner import follow, read_manifest, start_run
    from sluiceway.devstack.seed import SeedPlan, seed
    from sluiceway.producers.config import CaptureSettings, CaptureTuning
    from sluiceway.producers.main import snapshot_once

    kafka = KafkaSettings().model_copy(update={"topic_prefix": "demo.sw."})
    pg, codec = PostgresSettings(), Codec()
    with console.status("starting the local stack (first time: downloads jars with Maven)"):
        stack.up(StackSettings.for_dev_stack(), kafka, pg, S3Settings())
    with console.status(f"seeding {tenants} tenants x {issues} issues into PostgreSQL"):
        counts = seed(pg, SeedPlan(tenants, issues, 7), codec)
    console.print(f"source seeded: {counts}")
    with console.status("capturing a snapshot into Kafka"):
        _reset_topics(kafka)
        snapshot_once(CaptureSettings(kafka, pg, CaptureTuning()), codec, None)
    # PII is handled in the stream: emails hashed with the destination's secret, names masked.
    spec = parse_spec({
        "tenants": ["tenant-001"], "destination": str(dest.resolve()),
        "pii": {"user.email_address": "hash", "user.display_name": "mask"},
        "pii_secret": "demo-destination-secret",
    })  # fmt: skip
    run, workers = start_run(spec, kafka, S3Settings())
    assert workers is not None
    with console.status(f"exporting tenant-001 as run {run.etl_id}"):
        follow(run, kafka, workers, 600, lambda done, total: None, S3Settings())
    manifest = read_manifest(run, S3Settings())
    console.print(f"run [bold]{run.etl_id}[/bold]: rows per table {manifest.rows()}")
    _show_rows(dest.resolve(), run.etl_id)
    console.print(f"lake: {dest.resolve()}  manifest: {dest.resolve() / 'manifest.json'}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
