"""``sluiceway process --run ETL_ID``: one faust worker for one export run.

Before a worker of a run with opt-outs joins the run's group it reads the verdicts of
processors/scan.py, which takes seconds on a large run (a full run needs no pass before
it: it reads its partitions from the cut downwards, processors/full_pass.py). faust
installs its signal handlers only once its worker starts, so until then SIGTERM and
SIGINT are this module's: during the pass they end the worker within half a second (it
has joined nothing and written nothing), and one that arrives after it is handed on to
faust as soon as its handlers are in place, so the worker leaves the group cleanly instead
of dying by the signal or, worse, ignoring it and running to the cut. The handler only
records the signal; the pass's loops ask for it, because an exception raised in a handler
surfaces in whatever C call is running (a client's constructor turned it into a TypeError).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust

from sluiceway.common import heap
from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.fingerprint import matches, secret_fingerprint
from sluiceway.common.health import HEALTH
from sluiceway.common.kafka_io import check_credentials, load_run, set_status
from sluiceway.common.runs import RunRecord
from sluiceway.common.schema_registry import evolving
from sluiceway.common.settings import SECRET_ENV, KafkaSettings
from sluiceway.common.spec import RunSpec, spec_of_run
from sluiceway.processors import metrics
from sluiceway.processors.app import Lookups, RunProcessor
from sluiceway.processors.config import ProcessorSettings
from sluiceway.processors.errors import ScanStoppedError
from sluiceway.processors.opt_out import no_opt_out
from sluiceway.processors.scan import opt_out_verdicts

log = logging.getLogger("sluiceway.processor")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class RunStats:
    """What one worker did; ``processing_s`` runs from its first event to its end markers,
    ``processing_cpu_s`` is the CPU time the worker process used meanwhile (all threads);
    ``read_before_first_output`` counts the events it read before it sent its first output
    (None: it sent none)."""

    etl_id: str
    read: int
    forwarded: int
    dead_lettered: int
    scan_s: float
    processing_s: float
    processing_cpu_s: float
    stopped: bool = False  # stopped (SIGTERM) before the run ended
    read_before_first_output: int | None = None

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
    set_status(kafka, record.etl_id, "failed", reason)
    raise ConfigError(reason)


class EarlyStop:
    """The stop signals until faust's worker takes them over (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, _signum: int, _frame: Any) -> None:
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested


@contextmanager
def early_stop() -> Iterator[EarlyStop]:
    """Our handlers for the stop signals, where signals can be handled (the main thread);
    faust's replace them when its worker starts, and the previous ones come back after."""
    stop = EarlyStop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pre_pass(
    settings: ProcessorSettings, record: RunRecord, spec: RunSpec, codec: Codec, stop: EarlyStop
) -> Lookups:
    """What the worker must know before its first event (processors/scan.py)."""
    started, passes = time.monotonic(), bool(spec.opt_out)
    if passes:
        log.info("run %s: pre-pass: reading the opt-out verdicts up to the cut", record.etl_id)
    stopped = stop.__bool__
    opted = (
        opt_out_verdicts(settings.kafka, record, spec, codec, stopped)
        if spec.opt_out
        else no_opt_out()
    )
    took = f"pre-pass done in {time.monotonic() - started:.1f}s; " if passes else ""
    log.info("run %s: %sjoining the group", record.etl_id, took)
    return Lookups(record.type == "full", opted)


class RunWorker(faust.Worker):
    """faust's worker, which also honours a stop that arrived before its handlers did."""

    def __init__(self, app: faust.App, stop: EarlyStop, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.early = stop

    async def on_first_start(self) -> None:
        await super().on_first_start()  # installs faust's signal handlers
        if self.early.requested:
            os.kill(os.getpid(), signal.SIGTERM)  # now faust's handler leaves the group cleanly


def run(
    etl_id: str,
    settings: ProcessorSettings,
    loglevel: str = "WARNING",
    *,
    check_not_dropped: Callable[[RunRecord], None],
) -> RunStats:
    """Process the run to its cut and send its end markers.

    ``check_not_dropped`` raises when the run's topics were already dropped; the command
    passes the control plane's check, which the processor does not import."""
    started = time.monotonic()
    _quiet_clients(loglevel)
    metrics.serve(settings.tuning.metrics_port)
    record, spec = _load(etl_id, settings.kafka, check_not_dropped)
    codec = evolving(Codec(), settings.kafka)
    with early_stop() as stop:
        try:
            lookups = pre_pass(settings, record, spec, codec, stop)
        except ScanStoppedError:
            log.info("processor of run %s stopped during its pre-pass, before joining", etl_id)
            return RunStats(etl_id, 0, 0, 0, time.monotonic() - started, 0.0, 0.0, stopped=True)
        processor = RunProcessor(settings, record, spec, codec, lookups)
        worker = RunWorker(
            processor.app, stop, loglevel=loglevel, quiet=True, redirect_stdouts=False
        )
        return _work(worker, processor, time.monotonic() - started)


def _quiet_clients(loglevel: str) -> None:
    # aiokafka formats a debug record per message when its loggers inherit DEBUG
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(loglevel), logging.WARNING))


def _load(
    etl_id: str, kafka: KafkaSettings, check_not_dropped: Callable[[RunRecord], None]
) -> tuple[RunRecord, RunSpec]:
    """The run's orders, checked: its topics still exist, and this worker holds its key."""
    check_credentials(kafka)
    record = load_run(kafka, etl_id)
    check_not_dropped(record)
    refuse_another_key(kafka, record, os.environ.get(SECRET_ENV))
    return record, spec_of_run(record.spec, os.environ.get(SECRET_ENV), etl_id)


def _work(worker: RunWorker, processor: RunProcessor, scan_s: float) -> RunStats:
    """Run the faust worker until the run ends (or a stop signal); the worker's figures."""
    cpu_at_end = _wire(worker, processor)
    etl_id = processor.run.etl_id
    heap.settle()  # start-up is done: its objects are no collector's business
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            log.error("processor of run %s stopped before the cut (exit %s)", etl_id, exc.code)
            raise
    finally:
        processor.close()
    if not processor.finished:
        # SIGTERM: faust left the group cleanly after the revoke committed what was handled
        log.info("processor of run %s stopped; the run's other workers carry on", etl_id)
    first, last = processor.first_event_at, processor.finished_at
    processing = (last - first) if first is not None and last is not None else 0.0
    cpu = cpu_at_end[0] - processor.first_event_cpu if cpu_at_end and first is not None else 0.0
    return RunStats(
        etl_id, processor.progress.read, processor.forwarded, processor.dead_lettered, scan_s,
        processing, cpu, stopped=not processor.finished,
        read_before_first_output=processor.read_before_first_output,
    )  # fmt: skip


def _wire(worker: RunWorker, processor: RunProcessor) -> list[float]:
    """Stop the worker when the run ends and report readiness on assignment; returns the
    list that receives the CPU time at the run's end."""
    etl_id = processor.run.etl_id
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
    return cpu_at_end
