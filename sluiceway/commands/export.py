"""``sluiceway export``: start export runs and follow them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.common.errors import ConfigError
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, load_spec_file, parse_spec
from sluiceway.control import registry
from sluiceway.control.runner import Workers, follow, log_dir, read_manifest, start_run

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

app = typer.Typer(no_args_is_help=True)


@app.command("start")
@friendly_errors
def start(
    spec_file: Path | None = typer.Option(None, "--spec", help="Run spec, JSON or YAML."),
    tenant: list[str] = typer.Option([], "--tenant", help="Tenant id to export (repeatable)."),
    entities: str | None = typer.Option(
        None, help="Comma-separated entities; default: every entity of the catalog."
    ),
    run_type: str = typer.Option(
        "full", "--type", help="full: every live entity; delta: changes since the last run."
    ),
    from_date: str | None = typer.Option(None, help="Only entities updated at/after (ISO 8601)."),
    dest: str | None = typer.Option(None, "--dest", help="A directory or s3://bucket/prefix."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run until its manifest exists."),
    timeout: float = typer.Option(1800.0, help="With --wait: give up after this many seconds."),
    launch: bool = typer.Option(
        True,
        help="Start the run's workers here; --no-launch leaves them to other machines (which "
        "hash PII with their own SLUICEWAY_PII_SECRET: a spec's pii_secret must be ours too).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Start an export run, from a spec file or from flags."""
    if wait and not launch:
        raise ConfigError("--wait follows the workers it launches; it cannot go with --no-launch")
    spec = _spec(spec_file, tenant, entities, run_type, from_date, dest)
    kafka, s3 = KafkaSettings(), S3Settings()
    run, workers = start_run(spec, kafka, s3, launch)
    if workers is None or not wait:
        commands = [f"sluiceway {stage} --run {run.etl_id}" for stage in ("process", "sink")]
        logs = str(log_dir(run.etl_id)) if workers else None  # None: elsewhere, or the pools
        payload = {"etl_id": run.etl_id, "status": "running", "logs": logs, "workers": commands}
        print_payload(payload, as_json)
        return
    follow_with_progress(run, kafka, workers, timeout, as_json, s3)
    report_run(run, read_manifest(run, s3), as_json)


def _spec(
    spec_file: Path | None, tenants: list[str], entities: str | None, run_type: str,
    from_date: str | None, dest: str | None,
) -> RunSpec:  # fmt: skip
    if spec_file is not None:
        if tenants:
            raise ConfigError("give tenants either in --spec or with --tenant, not both")
        spec = load_spec_file(spec_file)
        return spec.model_copy(update={"destination": dest}) if dest else spec
    if not tenants or dest is None:
        raise ConfigError("give --spec FILE, or at least --tenant and --dest")
    data: dict[str, Any] = {
        "tenants": tenants, "type": run_type, "destination": dest,
    }  # fmt: skip
    if entities is not None:  # else the spec's default: every entity of the catalog
        data["entities"] = [e.strip() for e in entities.split(",") if e.strip()]
    if from_date is not None:
        data["from_date"] = from_date
    return parse_spec(data, source="flags")


def follow_with_progress(
    run: RunRecord, kafka: KafkaSettings, workers: Workers, timeout: float, quiet: bool,
    s3: S3Settings,
) -> None:  # fmt: skip
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"run {run.etl_id}", total=None)
        follow(
            run,
            kafka,
            workers,
            timeout,
            lambda done, total: bar.update(task, completed=done, total=total),
            s3,
        )


def report_run(run: RunRecord, manifest: RunManifest, as_json: bool) -> None:
    if as_json:
        print_payload(
            {
                "etl_id": run.etl_id,
                "status": manifest.status,
                "destination": run.destination,
                "rows": manifest.rows(),
                "files": manifest.totals.files,
            },
            True,
        )
        return
    table = Table("table", "rows", "files", title=f"run {run.etl_id} {manifest.status}")
    for name, info in manifest.tables.items():
        table.add_row(name, str(info.rows), str(len(info.files)))
    console = Console()
    console.print(table)
    console.print(f"files under {run.destination}; manifest: _runs/{run.etl_id}.json")


def print_payload(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for key, value in payload.items():
            typer.echo(f"{key}: {value}")


@app.command("status")
@friendly_errors
def status(
    etl_id: str | None = typer.Argument(None, help="Run id; the latest run when left out."),
    all_runs: bool = typer.Option(False, "--all", help="List every run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Where a run (or every run) stands: running, complete, cancelled or failed."""
    kafka, s3 = KafkaSettings(), S3Settings()
    found = registry.states(kafka, s3) if all_runs else [registry.state(kafka, s3, etl_id)]
    if as_json:
        payload: Any = [s.to_dict() for s in found] if all_runs else found[0].to_dict()
        typer.echo(json.dumps(payload))
        return
    table = Table("etl_id", "type", "status", "tenants", "rows", "destination")
    for item in found:
        rows = item.manifest.totals.rows if item.manifest else None
        table.add_row(item.run.etl_id, item.run.type, item.status, ",".join(item.run.tenants),
                      "-" if rows is None else str(rows), item.run.destination)  # fmt: skip
    Console().print(table)
    for item in found:  # why a running run waits; unwrapped, it stays one greppable line
        if item.note:
            typer.echo(f"{item.run.etl_id}: {item.note}")


@app.command("cancel")
@friendly_errors
def cancel(
    etl_id: str | None = typer.Argument(None, help="Run id; the latest run when left out."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Cancel a running run (also one left behind by a dead worker) and release its destination."""
    kafka, s3 = KafkaSettings(), S3Settings()
    item = registry.state(kafka, s3, etl_id)
    reason = "cancelled by the user"
    stopped = registry.cancel(kafka, item, log_dir(item.run.etl_id), reason)
    after = registry.after_cancel(kafka, s3, item, reason)  # complete, if it finished first
    print_payload(
        {"etl_id": item.run.etl_id, "status": after.status, "stopped_workers": stopped}, as_json
    )


@app.command("sweep")
@friendly_errors
def sweep(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Drop finished runs' leftovers now, as `serve` and the pools do every
    SLUICEWAY_CLEANUP_SWEEP_INTERVAL_S: topics and groups past SLUICEWAY_CLEANUP_RUN_RETENTION_S,
    control records and log folders past SLUICEWAY_CLEANUP_RECORD_RETENTION_S."""
    from sluiceway.control import cleanup

    swept = cleanup.sweep(KafkaSettings(), S3Settings())
    print_payload({"dropped": swept.dropped, "expired": swept.expired}, as_json)
