"""``sluiceway process --run ETL_ID``: one faust worker for one export run."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import faust

from processors import metrics
from processors.app import Lookups, RunProcessor
from processors.config import ProcessorSettings
from processors.scan import issue_projects, latest_offsets, no_project
from processors.spec import spec_of_run
from sluiceway import registry
from sluiceway.cleanup import check_not_dropped
from sluiceway.codec import Codec
from sluiceway.errors import ConfigError
from sluiceway.fingerprint import matches, secret_fingerprint
from sluiceway.health import HEALTH
from sluiceway.kafka_io import check_credentials, load_run
from sluiceway.runs import RunRecord
from sluiceway.settings import SECRET_ENV, KafkaSettings


@dataclass(frozen=True)
class RunStats:
    """What one worker did; ``processing_s`` runs from its first event to its end markers,
    ``processing_cpu_s`` is the CPU time the worker process used meanwhile (all threads)."""

    etl_id: str
    read: int
    forwarded: int
    dead_lettered: int
    scan_s: float
    processing_s: float
    processing_cpu_s: float
    stopped: bool = False  # stopped (SIGTERM) before the run ended

    @property
    def events_per_s(self) -> float:
        return self.read / self.processing_s if self.processing_s > 0 else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        """Throughput that other load on the machine does not skew as much as events_per_s."""
        return self.read / self.processing_cpu_s if self.processing_cpu_s > 0 else 0.0


STOP_GRACE_S = 60.0


def _exit_if_still_running(etl_id: str) -> None:
    """faust's shutdown has been seen to hang after a run; the run is done by then."""
    if threading.Event().wait(STOP_GRACE_S):
        return
    logging.getLogger("sluiceway.processor").error(
        "processor of run %s ended the run but faust did not stop in %.0fs; exiting",
        etl_id, STOP_GRACE_S,
    )  # fmt: skip
    logging.shutdown()
    os._exit(0)


def refuse_another_key(kafka: KafkaSettings, record: RunRecord, secret: str | None) -> None:
    """A run started with a PII key is processed with that key only: a worker holding another
    (or none) marks the run failed and stops before it hashes anything, as two keys in one
    run would hash alike values differently."""
    wanted = record.secret_fingerprint
    if wanted is None or matches(wanted, secret):
        return
    own = f"has fingerprint {secret_fingerprint(secret)}" if secret else "is not set"
    reason = (
        f"this processor's {SECRET_ENV} {own}, but run {record.etl_id} hashes PII with the key "
        f"of fingerprint {wanted}: give the run's workers that key"
    )
    registry.set_status(kafka, record.etl_id, "failed", reason)
    raise ConfigError(reason)


def run(etl_id: str, settings: ProcessorSettings, loglevel: str = "WARNING") -> RunStats:
    """Process the run to its cut and send its end markers."""
    started = time.monotonic()
    # aiokafka formats a debug record per message when its loggers inherit DEBUG
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(loglevel), logging.WARNING))
    metrics.serve(settings.tuning.metrics_port)
    check_credentials(settings.kafka)
    record = load_run(settings.kafka, etl_id)
    check_not_dropped(settings.kafka, record)
    refuse_another_key(settings.kafka, record, os.environ.get(SECRET_ENV))
    spec = spec_of_run(record.spec, os.environ.get(SECRET_ENV), etl_id)
    codec = Codec()
    latest = latest_offsets(settings.kafka, record) if record.type == "full" else None
    projects = issue_projects(settings.kafka, record, codec) if spec.opt_out else no_project
    lookup = Lookups(latest, projects)
    processor = RunProcessor(settings, record, spec, codec, lookup)
    scan_s = time.monotonic() - started
    worker = faust.Worker(processor.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)

    stopping: list[asyncio.Future[None]] = []
    cpu_at_end: list[float] = []

    def finished() -> None:
        cpu_at_end.append(time.process_time())
        stopping.append(asyncio.ensure_future(worker.stop(), loop=worker.loop))
        # every partition's end is committed: nothing is lost if faust's shutdown hangs
        threading.Thread(target=_exit_if_still_running, args=(etl_id,), daemon=True).start()

    processor.on_finished = finished  # type: ignore[method-assign]

    def assigned(_app: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        # a worker the group gave no partition is a ready standby, not a failing one
        HEALTH.ready(True, f"{len(args[0])} change-topic partitions assigned")

    processor.app.on_partitions_assigned.connect(assigned)
    log = logging.getLogger("sluiceway.processor")
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            log.error("processor of run %s stopped before the cut (exit %s)", etl_id, exc.code)
            raise
    if not processor.finished:
        # SIGTERM: faust left the group cleanly after the revoke committed what was handled
        log.info("processor of run %s stopped; the run's other workers carry on", etl_id)
    first, last = processor.first_event_at, processor.finished_at
    processing = (last - first) if first is not None and last is not None else 0.0
    cpu = cpu_at_end[0] - processor.first_event_cpu if cpu_at_end and first is not None else 0.0
    return RunStats(
        etl_id, processor.progress.read, processor.forwarded, processor.dead_lettered, scan_s,
        processing, cpu, stopped=not processor.finished,
    )  # fmt: skip
