"""Prometheus metrics of the sink, registered once per process, and what feeds them.

``PollTimes`` remembers when each batch was polled so a commit can report how long its
oldest row waited to become durable; ``LagMonitor`` samples consumer lag every few seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("sluiceway.sink")

ROTATIONS = Counter(
    "sluiceway_sink_rotations_total", "Files closed by the sink, by reason.", ["reason"]
)
ROWS = Counter("sluiceway_sink_rows_total", "Rows written to published files.", ["table"])
BYTES = Counter("sluiceway_sink_bytes_total", "Bytes of published files.", ["table"])
FILES = Counter("sluiceway_sink_files_total", "Files published.", ["table"])
DEAD_LETTERS = Counter(
    "sluiceway_sink_dead_letters_total", "Run-topic messages sent to the dead-letter topic."
)
POLL_TO_COMMIT = Histogram(
    "sluiceway_sink_poll_to_commit_seconds",
    "Time from polling the oldest message a commit covers to that commit (its file is durable).",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
)
CONSUMER_LAG = Gauge(
    "sluiceway_sink_consumer_lag",
    "Messages of the run topic not yet committed: high watermark - committed offset.",
    ["topic", "partition"],
    # under a pool (multiprocess mode) only live workers count: a finished run has no lag
    multiprocess_mode="livemax",
)
WEBHOOK_ATTEMPTS = Counter(
    "sluiceway_sink_webhook_attempts_total", "HTTP requests made to the completion webhook."
)
WEBHOOK_FAILURES = Counter(
    "sluiceway_sink_webhook_failures_total", "Completion-webhook requests that failed."
)
WEBHOOK_UNDELIVERED = Counter(
    "sluiceway_sink_webhook_undelivered_total",
    "Completion notices given up on after every attempt failed.",
)
DISK_GUARD_PAUSED = Gauge(
    "sluiceway_sink_disk_guard_paused",
    "1 while the sink waits for free space at its destination, else 0.",
    multiprocess_mode="livemax",
)


@dataclass
class PollTimes:
    """Per partition, runs of consecutive offsets polled together: [first, last, polled_at]."""

    batches: dict[int, deque[list[float]]] = field(default_factory=dict)

    def saw(self, partition: int, offset: int, at: float) -> None:
        runs = self.batches.setdefault(partition, deque())
        if runs and runs[-1][2] == at and runs[-1][1] < offset:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset, at])

    def committed(self, partition: int, upto: int) -> float | None:
        """Forget offsets below ``upto``; returns when the oldest of them was polled."""
        runs = self.batches.get(partition)
        if not runs or runs[0][0] >= upto:
            return None
        oldest = runs[0][2]
        while runs and runs[0][1] < upto:
            runs.popleft()
        if runs and runs[0][0] < upto:
            runs[0][0] = upto  # the rest of that batch is still waiting for its file
        return oldest


def observe_commit(times: PollTimes, changed: dict[int, int], now: float) -> None:
    polled = [t for p, o in changed.items() if (t := times.committed(p, o)) is not None]
    if polled:
        POLL_TO_COMMIT.observe(max(0.0, now - min(polled)))


@dataclass
class LagMonitor:
    """Samples high watermark - committed offset of each partition of one topic."""

    consumer: Consumer
    topic: str
    partitions: int
    interval_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    timeout_s: float = 2.0
    _next: float = 0.0
    _seed: dict[int, int] | None = None

    def maybe_update(self, committed: dict[int, int]) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            self._update(committed)
        except KafkaException as exc:  # lag is advisory: never stop the sink for it
            log.debug("consumer lag of %s not measured: %s", self.topic, exc)

    def _update(self, committed: dict[int, int]) -> None:
        if self._seed is None:
            # offsets an earlier attempt committed, until this process commits its own
            found = self.consumer.committed(
                [TopicPartition(self.topic, p) for p in range(self.partitions)], self.timeout_s
            )
            self._seed = {tp.partition: tp.offset for tp in found if tp.offset >= 0}
        for p in range(self.partitions):
            low, high = self.consumer.get_watermark_offsets(
                # the high watermark of the last fetch: no broker round trip on the hot path
                TopicPartition(self.topic, p),
                timeout=self.timeout_s,
                cached=True,
            )
            done = committed.get(p, self._seed.get(p, low))
            CONSUMER_LAG.labels(topic=self.topic, partition=str(p)).set(max(0, high - done))
