"""``sluiceway export``: start export runs and follow them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluiceway.cli import friendly_errors
from sluiceway.errors import ConfigError, TransientError
from sluiceway.export import (
    ExportRequest,
    absolute_destination,
    announce,
    launch_workers,
    plan_run,
    scanned,
    validate_request,
    worker_failure,
)
from sluiceway.runs import RunRecord
from sluiceway.settings import ENTITIES, KafkaSettings, S3Settings, StackSettings

app = typer.Typer(no_args_is_help=True)


@app.command("start")
@friendly_errors
def start(
    tenant: list[str] = typer.Option(..., "--tenant", help="Tenant id to export (repeatable)."),
    entities: str = typer.Option(",".join(ENTITIES), help="Comma-separated entity types."),
    run_type: str = typer.Option(
        "full", "--type", help="full: every live entity; delta: changes since the last run."
    ),
    dest: str = typer.Option(..., "--dest", help="Destination: a directory or s3://bucket/prefix."),
    wait: bool = typer.Option(
        False, "--wait", help="Follow the run until its manifest is written."
    ),
    timeout: float = typer.Option(1800.0, help="With --wait: give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Start an export run of the given tenants."""
    kafka = KafkaSettings()
    req = ExportRequest(
        tuple(tenant), tuple(e.strip() for e in entities.split(",") if e.strip()), dest, run_type
    )
    run, manifest = run_export(req, kafka, wait, timeout, quiet=as_json)
    if manifest is None:
        log_dir = StackSettings().home / "runs" / run.etl_id
        _print({"etl_id": run.etl_id, "status": "running", "logs": str(log_dir)}, as_json)
        return
    _report(run, manifest, as_json)


def run_export(
    req: ExportRequest, kafka: KafkaSettings, wait: bool, timeout: float, quiet: bool
) -> tuple[RunRecord, dict[str, Any] | None]:
    """Validate, announce and launch a run; with ``wait``, follow it and return its manifest."""
    req = dataclasses.replace(req, destination=absolute_destination(req.destination))
    validate_request(req, kafka, S3Settings())
    run = plan_run(req, kafka, S3Settings())
    announce(run, kafka)
    log_dir = StackSettings().home / "runs" / run.etl_id
    workers = launch_workers(run, kafka, log_dir)
    if not wait:
        return run, None
    _follow(run, kafka, workers, log_dir, timeout, quiet)
    return run, _read_manifest(run)


def _follow(
    run: RunRecord, kafka: KafkaSettings, workers: Any, log_dir: Path, timeout: float, quiet: bool
) -> None:
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"run {run.etl_id}", total=None)
        while workers["sink"].poll() is None:
            failure = worker_failure(workers, log_dir)
            if failure:
                raise TransientError(failure)
            if time.monotonic() > deadline:
                raise TransientError(
                    f"run {run.etl_id} not complete after {timeout:.0f}s; logs in {log_dir}"
                )
            done, total = scanned(run, kafka)
            bar.update(task, completed=done, total=total)
            time.sleep(0.5)
    failure = worker_failure(workers, log_dir)
    if failure:
        raise TransientError(failure)


def _read_manifest(run: RunRecord) -> dict[str, Any]:
    from sinks.layout import run_manifest_path
    from sinks.manifest import read_json
    from sinks.storage import open_lake

    lake = open_lake(run.destination, S3Settings())
    manifest = read_json(lake, run_manifest_path(run.etl_id))
    if manifest is None:
        raise ConfigError(f"run {run.etl_id} finished without a manifest in {run.destination}")
    return dict(manifest)


def _report(run: RunRecord, manifest: dict[str, Any], as_json: bool) -> None:
    rows = {t: info["rows"] for t, info in manifest["tables"].items()}
    if as_json:
        _print(
            {
                "etl_id": run.etl_id,
                "status": manifest["status"],
                "destination": run.destination,
                "rows": rows,
                "files": manifest["totals"]["files"],
            },
            True,
        )
        return
    table = Table("table", "rows", "files", title=f"run {run.etl_id} {manifest['status']}")
    for name, info in manifest["tables"].items():
        table.add_row(name, str(info["rows"]), str(len(info["files"])))
    console = Console()
    console.print(table)
    console.print(f"files under {run.destination}; manifest: _runs/{run.etl_id}.json")


def _print(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for key, value in payload.items():
            typer.echo(f"{key}: {value}")
