"""Prometheus metrics of the capture service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from sluiceway.common import health

EVENTS = Counter("sluiceway_capture_events_total", "Change events produced", ["entity", "op"])
SNAPSHOT_ROWS = Counter(
    "sluiceway_capture_snapshot_rows_total", "Snapshot rows produced", ["table"]
)
SNAPSHOT_DONE = Gauge(
    "sluiceway_capture_snapshot_table_done", "1 once a table's snapshot is complete", ["table"]
)
LAG_BYTES = Gauge(
    "sluiceway_capture_replication_lag_bytes", "Server WAL end minus the confirmed position"
)
LAG_SECONDS = Gauge(
    "sluiceway_capture_replication_lag_seconds", "Age of the last captured commit when produced"
)
CONFIRMED_LSN = Gauge("sluiceway_capture_confirmed_lsn", "Position confirmed to the slot")
PRODUCE_ERRORS = Counter("sluiceway_capture_produce_errors_total", "Failed deliveries to Kafka")
RECONNECTS = Counter("sluiceway_capture_reconnects_total", "Reconnects after a source failure")


def serve(port: int | None) -> None:
    """/metrics, /healthz and /readyz on ``port`` (None: no endpoint)."""
    health.serve(port)
