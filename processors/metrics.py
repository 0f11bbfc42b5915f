"""Prometheus metrics of the processor, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from sluiceway.common import health

READ = Counter(
    "sluiceway_processor_events_read_total", "Change events read by the run's worker.", ["topic"]
)
FORWARDED = Counter(
    "sluiceway_processor_events_forwarded_total",
    "Transformed events sent to the run topic.",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "sluiceway_processor_dead_letters_total",
    "Change events sent to the processor's dead-letter topic.",
)
BATCH_SECONDS = Histogram(
    "sluiceway_processor_batch_seconds",
    "Time to transform and send one fetched batch.",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PENDING_PARTITIONS = Gauge(
    "sluiceway_processor_partitions_pending",
    "Change-topic partitions the run has not yet read up to its cut.",
    multiprocess_mode="livesum",  # under a pool: the live workers' runs, summed
)


def serve(port: int | None) -> None:
    """/metrics, /healthz and /readyz on ``port`` (None: no endpoint)."""
    health.serve(port)
