"""``sluiceway replay`` and ``sluiceway restore``: backups rebuilt from the change topics."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from sluiceway.cli import friendly_errors
from sluiceway.commands.export import follow_with_progress, print_payload, report_run
from sluiceway.common.codec import Codec
from sluiceway.common.entities import entity_names
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control.replay import parse_time
from sluiceway.control.runner import log_dir, read_manifest, start_run
from sluiceway.tools.restore import RestoreRequest, restore


@friendly_errors
def replay(
    to: str = typer.Option(..., "--to", help="Rebuild as of this time (ISO 8601, with offset)."),
    tenant: list[str] = typer.Option([], "--tenant", help="Tenant id (repeatable)."),
    dest: str = typer.Option(..., "--dest", help="A directory or s3://bucket/prefix."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run until its manifest exists."),
    timeout: float = typer.Option(1800.0, help="With --wait: give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rebuild a backup as of TIME from the change topics, as a full export at DEST."""
    moment = parse_time(to, datetime.now(UTC))
    if not tenant:
        raise ConfigError("give at least one --tenant to replay")
    spec = parse_spec(
        {"tenants": tenant, "type": "full", "destination": dest, "entities": list(entity_names())},
        source="flags",
    )
    kafka, s3 = KafkaSettings(), S3Settings()
    run, workers = start_run(spec, kafka, s3, replay_to=moment)
    assert workers is not None
    if not wait:
        payload = {"etl_id": run.etl_id, "status": "running", "replay_to": run.replay_to,
                   "logs": str(log_dir(run.etl_id)) if workers else None}  # fmt: skip
        print_payload(payload, as_json)
        return
    follow_with_progress(run, kafka, workers, timeout, as_json, s3)
    report_run(run, read_manifest(run, s3), as_json)


@friendly_errors
def restore_cmd(
    source: str = typer.Option(
        ..., "--from", help="The backup: a directory or s3://bucket/prefix."
    ),
    target_dsn: str = typer.Option(..., "--target-dsn", help="libpq DSN or postgresql:// URL."),
    tenant: list[str] = typer.Option([], "--tenant", help="Tenant id (repeatable; default all)."),
    replace: bool = typer.Option(
        False, "--replace", help="Delete the tenants' rows in the target first (same transaction)."
    ),
    as_tenant: str | None = typer.Option(
        None,
        "--as-tenant",
        help="A remapped backup (remap, a migration's lake): the tenant its rows carry, which "
        "restore loads them as; required for such a backup, refused for any other.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Load the latest full export at --from into a PostgreSQL database, in one transaction."""
    request = RestoreRequest(source, target_dsn, tuple(tenant), replace, as_tenant)
    etl_id, counts = restore(request, S3Settings(), Codec())
    print_payload({"etl_id": etl_id, "status": "restored", "rows": counts}, as_json)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    app.command("restore")(restore_cmd)
