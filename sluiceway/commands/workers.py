"""The long-running stage commands: capture, process, sink."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Literal

import typer
from rich.progress import Progress, TaskID

from sluiceway.cli import friendly_errors
from sluiceway.common.errors import ConfigError, RunAlreadyCompleteError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings

Stage = Literal["process", "sink"]


def _worker_logging() -> None:
    logging.getLogger("sluiceway").setLevel(logging.INFO)
    logging.getLogger("sluiceway.kafka.client").setLevel(logging.WARNING)


@friendly_errors
def capture(
    snapshot_only: bool = typer.Option(
        False, "--snapshot-only", help="Publish one consistent snapshot and exit (no slot)."
    ),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics here."),
    as_json: bool = typer.Option(False, "--json", help="Print events per entity as JSON."),
) -> None:
    """Snapshot the source, then stream every change to sw.cdc.<entity> until stopped."""
    from sluiceway.common.codec import Codec
    from sluiceway.producers.config import CaptureSettings, CaptureTuning
    from sluiceway.producers.main import run as run_capture
    from sluiceway.producers.main import snapshot_once

    tuning = CaptureTuning()
    if metrics_port is not None:
        tuning = tuning.model_copy(update={"metrics_port": metrics_port})
    settings = CaptureSettings(KafkaSettings(), PostgresSettings(), tuning)
    with Progress(transient=True, disable=as_json) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(entity: str, n: int) -> None:
            if entity not in tasks:
                tasks[entity] = bar.add_task(f"snapshot {entity}", total=None)
            bar.advance(tasks[entity], n)

        if snapshot_only:
            counts = snapshot_once(settings, Codec(), advance)
            typer.echo(json.dumps(counts) if as_json else f"captured {counts}")
            return
    _worker_logging()
    stop = stop_on_signals()
    run_capture(settings, Codec(), stop)


def stop_on_signals() -> Callable[[], bool]:
    """SIGTERM and SIGINT ask for a clean stop: flush, confirm, exit."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    return stopping.is_set


RUN = typer.Option(None, "--run", help="etl_id of the one run to work on.")
POOL = typer.Option(
    False, "--pool", help="Keep running: start a worker for every active run (Deployments)."
)
METRICS_PORT = typer.Option(None, help="Serve /metrics, /healthz and /readyz here.")


def _run_or_pool(stage: Stage, run: str | None, pool: bool, metrics_port: int | None) -> str:
    """The run to work on; with --pool, runs the pool until SIGTERM and exits."""
    if pool == (run is not None):
        raise ConfigError(f"give exactly one of --run ETL_ID and --pool to `sluiceway {stage}`")
    if run is not None:
        return run
    from sluiceway.common.health import HealthSettings
    from sluiceway.control.pool import PoolSettings, cleanup, new_pool, run_pool

    _worker_logging()
    workers = new_pool(stage, KafkaSettings(), S3Settings(), PoolSettings())
    try:
        run_pool(workers, stop_on_signals(), metrics_port, HealthSettings())
    finally:
        cleanup(workers)
    raise typer.Exit(0)


@friendly_errors
def process(
    run: str | None = RUN,
    pool: bool = POOL,
    metrics_port: int | None = METRICS_PORT,
    as_json: bool = typer.Option(False, "--json", help="Print the worker's statistics as JSON."),
) -> None:
    """Run a faust worker for one export run until its cut, then send end markers."""
    from sluiceway.control.cleanup import check_not_dropped
    from sluiceway.processors.config import ProcessorSettings, ProcessorTuning
    from sluiceway.processors.main import run as run_processor

    run = _run_or_pool("process", run, pool, metrics_port)
    _worker_logging()
    tuning = ProcessorTuning()
    if metrics_port is not None:
        tuning = tuning.model_copy(update={"metrics_port": metrics_port})
    kafka = KafkaSettings()
    try:
        stats = run_processor(
            run,
            ProcessorSettings(kafka, tuning),
            check_not_dropped=lambda record: check_not_dropped(kafka, record),
        )
    except RunAlreadyCompleteError as done:
        typer.echo(json.dumps({"status": "complete"}) if as_json else str(done))
        return
    if as_json:
        rates = {"events_per_s": stats.events_per_s, "events_per_cpu_s": stats.events_per_cpu_s}
        typer.echo(json.dumps({**dataclasses.asdict(stats), **rates}))
    else:
        typer.echo(f"run {run}: read {stats.read}, forwarded {stats.forwarded} events")


@friendly_errors
def sink(
    run: str | None = RUN,
    pool: bool = POOL,
    metrics_port: int | None = METRICS_PORT,
    member: str | None = typer.Option(
        None,
        help="Static group member id, unique per sink worker (e.g. the pod name): a restarted "
        "sink gets its partitions back at once.",
    ),
) -> None:
    """Write one export run's events to the lake; the sink that sees the run end writes its
    manifest. Several sinks may share a run. SIGTERM: publish open files, commit, stop."""
    from sluiceway.control.cleanup import drop_when_idle
    from sluiceway.sinks.config import SinkSettings
    from sluiceway.sinks.main import run as run_sink

    run = _run_or_pool("sink", run, pool, metrics_port)
    _worker_logging()
    settings = SinkSettings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    if member is not None:
        settings = settings.model_copy(update={"member": member})
    stop = stop_on_signals()
    kafka = KafkaSettings()
    # the last worker to leave a complete run drops its topics and groups
    manifest = run_sink(
        run, kafka, S3Settings(), settings, stopping=stop,
        left_run=lambda record: drop_when_idle(kafka, record),
    )  # fmt: skip
    typer.echo(json.dumps(manifest.totals.model_dump() if manifest else {"status": "stopped"}))


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)
    app.command("process")(process)
    app.command("sink")(sink)
