"""How the faust app of one run is configured: its broker, guarantee, fetch and batch sizes,
session timeouts and the folder faust keeps.

The worker that hosts the app (processors/app.py) wires its own handlers to it.
"""

from __future__ import annotations

from sluiceway.common.kafka_io import broker_count
from sluiceway.common.settings import state_home
from sluiceway.processors import fetch
from sluiceway.processors.config import ProcessorSettings
from sluiceway.processors.credentials import faust_credentials


def build_app(settings: ProcessorSettings, etl_id: str, full: bool) -> fetch.BatchApp:
    """The app of run ``etl_id``, its consumer group ``sw-process-<etl_id>``; ``full``: a full
    run, whose partitions the worker reads itself."""
    kafka, tuning = settings.kafka, settings.tuning
    fetch.register()
    # faust keeps a folder per app (by default in the working directory) and makes
    # only its last level
    datadir = state_home() / "faust" / f"sw-process-{etl_id}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return fetch.BatchApp(
        f"sw-process-{etl_id}",
        broker=f"{fetch.SCHEME}://{kafka.servers}",
        broker_credentials=faust_credentials(kafka),
        # any topic faust itself declares: as durable as the control topics, not one replica
        topic_replication_factor=kafka.durability("control", broker_count(kafka))[0],
        # no on_leader timers here, so no leader topic: creating it at start was one more
        # call that failed (NodeNotReadyError) when a broker was down as a worker started
        topic_disable_leader=True,
        processing_guarantee=tuning.guarantee,
        broker_commit_interval=tuning.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        topic_partitions=kafka.partitions,
        web_enabled=False,
        TableManager=fetch.NoTableWait,
        store="memory://",
        datadir=str(datadir),
        # large fetches and producer batches: a run reads a bounded backlog as fast as it can
        broker_max_poll_records=tuning.poll_records,
        # a full run reads its partitions itself: faust's consumer only holds them
        consumer_max_fetch_size=64 * 1024 if full else 16 * 1024 * 1024,
        producer_max_batch_size=1024 * 1024,
        producer_linger_ms=5,
        # a killed worker's partitions wait this long for their next owner
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        key_serializer="raw",
        value_serializer="raw",
    )
