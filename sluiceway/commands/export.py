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

from sluiceway import registry
from sluiceway.cli import friendly_errors
from sluiceway.errors import ConfigError, RunConflictError, TransientError
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
    launch: bool = typer.Option(
        True, help="Start the run's workers here; --no-launch leaves them to other machines."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Start an export run of the given tenants."""
    if wait and not launch:
        raise ConfigError("--wait follows the workers it launches; it cannot go with --no-launch")
    kafka = KafkaSettings()
    req = ExportRequest(
        tuple(tenant), tuple(e.strip() for e in entities.split(",") if e.strip()), dest, run_type
    )
    run, manifest = run_export(req, kafka, wait, timeout, quiet=as_json, launch=launch)
    if manifest is None:
        workers = [f"sluiceway {stage} --run {run.etl_id}" for stage in ("process", "sink")]
        logs = str(StackSettings().home / "runs" / run.etl_id) if launch else None
        _print(
            {"etl_id": run.etl_id, "status": "running", "logs": logs, "workers": workers}, as_json
        )
        return
    _report(run, manifest, as_json)


def run_export(
    req: ExportRequest, kafka: KafkaSettings, wait: bool, timeout: float, quiet: bool,
    launch: bool = True,
) -> tuple[RunRecord, dict[str, Any] | None]:  # fmt: skip
    """Validate, announce and launch a run; with ``wait``, follow it and return its manifest."""
    req = dataclasses.replace(req, destination=absolute_destination(req.destination))
    validate_request(req, kafka, S3Settings())
    busy = registry.active_at(kafka, S3Settings(), req.destination)
    if busy is not None:
        raise RunConflictError(
            f"destination {req.destination} is busy with run {busy.run.etl_id}; wait for it or "
            f"cancel it with: sluiceway export cancel {busy.run.etl_id}"
        )
    run = plan_run(req, kafka, S3Settings())
    announce(run, kafka)
    if not launch:
        return run, None
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
                registry.set_status(kafka, run.etl_id, "failed", failure)
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
        rows = (item.manifest or {}).get("totals", {}).get("rows")
        table.add_row(item.run.etl_id, item.run.type, item.status, ",".join(item.run.tenants),
                      "-" if rows is None else str(rows), item.run.destination)  # fmt: skip
    Console().print(table)


@app.command("cancel")
@friendly_errors
def cancel(
    etl_id: str | None = typer.Argument(None, help="Run id; the latest run when left out."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Cancel a running run (also one left behind by a dead worker) and release its destination."""
    kafka, s3 = KafkaSettings(), S3Settings()
    item = registry.state(kafka, s3, etl_id)
    if not item.active:
        raise ConfigError(f"run {item.run.etl_id} is already {item.status}; nothing to cancel")
    registry.set_status(kafka, item.run.etl_id, "cancelled", "cancelled by the user")
    stopped = registry.stop_local_workers(StackSettings().home / "runs" / item.run.etl_id)
    _print({"etl_id": item.run.etl_id, "status": "cancelled", "stopped_workers": stopped}, as_json)
