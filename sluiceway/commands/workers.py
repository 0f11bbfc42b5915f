"""The long-running stage commands: capture, process, sink."""

from __future__ import annotations

import json
import logging

import typer
from rich.progress import Progress, TaskID

from sluiceway.cli import friendly_errors
from sluiceway.settings import KafkaSettings, PostgresSettings, S3Settings


def _worker_logging() -> None:
    logging.getLogger("sluiceway").setLevel(logging.INFO)
    logging.getLogger("sluiceway.kafka.client").setLevel(logging.WARNING)


@friendly_errors
def capture(
    as_json: bool = typer.Option(False, "--json", help="Print events per entity as JSON."),
) -> None:
    """Snapshot the source and publish one change event per row to sw.cdc.<entity>."""
    from producers.config import CaptureSettings, CaptureTuning
    from producers.snapshot import run_snapshot
    from sluiceway.codec import Codec

    settings = CaptureSettings(KafkaSettings(), PostgresSettings(), CaptureTuning())
    with Progress(transient=True, disable=as_json) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(entity: str, n: int) -> None:
            if entity not in tasks:
                tasks[entity] = bar.add_task(f"snapshot {entity}", total=None)
            bar.advance(tasks[entity], n)

        counts = run_snapshot(settings, Codec(), advance)
    typer.echo(json.dumps(counts) if as_json else f"captured {counts}")


@friendly_errors
def process(run: str = typer.Option(..., "--run", help="etl_id of the run to process.")) -> None:
    """Run a faust worker for one export run until its cut, then send end markers."""
    from processors.config import ProcessorSettings, ProcessorTuning
    from processors.main import run as run_processor

    _worker_logging()
    forwarded = run_processor(run, ProcessorSettings(KafkaSettings(), ProcessorTuning()))
    typer.echo(f"run {run}: forwarded {forwarded} events")


@friendly_errors
def sink(run: str = typer.Option(..., "--run", help="etl_id of the run to write.")) -> None:
    """Write one export run's events to the lake, then its manifest."""
    from sinks.config import SinkSettings
    from sinks.main import run as run_sink

    _worker_logging()
    manifest = run_sink(run, KafkaSettings(), S3Settings(), SinkSettings())
    typer.echo(json.dumps(manifest.get("totals", {})))


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)
    app.command("process")(process)
    app.command("sink")(sink)
