"""``sluiceway check``: one line per prerequisite of an export, exit 0 only when all hold."""

from __future__ import annotations

import json

import typer

from sluiceway.checks import Finding, check_destination, check_kafka, check_postgres
from sluiceway.cli import friendly_errors
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.exit_codes import BAD_INPUT, KINDS, OK, TRANSIENT


@friendly_errors
def check(
    dest: str | None = typer.Option(
        None, "--dest", help="Also check this destination (a directory or s3://bucket/prefix)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check Kafka, PostgreSQL (wal_level, replication role, slots, decoding plugin), the
    entity catalog (pg.catalog) against the live tables, the destination and its free disk
    against the configured settings."""
    from sluiceway.producers.config import CaptureTuning
    from sluiceway.sinks.guard_config import GuardSettings

    tuning = CaptureTuning()
    findings = [
        *check_kafka(KafkaSettings()),
        *check_postgres(PostgresSettings(), tuning.slot, tuning.plugin),
    ]
    if dest is None:
        findings.append(Finding("destination", True, "not checked (give --dest to check one)"))
    else:
        findings += check_destination(dest, S3Settings(), GuardSettings().min_free_bytes)
    failed = [f for f in findings if not f.ok]
    code = OK if not failed else TRANSIENT if any(f.transient for f in failed) else BAD_INPUT
    if as_json:
        payload: dict[str, object] = {"ok": not failed, "checks": [f.to_dict() for f in findings]}
        if failed:
            problems = [f.line().removeprefix("FAIL ") for f in failed]
            error = f"{len(failed)} of {len(findings)} checks failed"
            payload |= {"error": error, "kind": KINDS[code], "problems": problems}
        typer.echo(json.dumps(payload))
    else:
        for finding in findings:
            typer.echo(finding.line())
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
