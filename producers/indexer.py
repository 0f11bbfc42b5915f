"""Keeping the tenant offset index beside the change topics (sluiceway/common/tenant_index.py).

A thread of the capture service reads every change topic as a read_committed consumer
and lists, per partition, which offsets hold which tenant. It reads sequentially, so
what it has read of a partition since a *segment* began, ``[lo, position)``, is complete:
it publishes that as a block keyed by ``lo``, again each time it has grown (at most once a
second), and starts a new segment when one holds ``SEGMENT_RECORDS`` records or is a
minute old, which bounds both a block's size and how often it is rewritten.

It keeps no offsets of its own: after a restart it continues from where the published
blocks reach. A block that never got out only leaves a range that runs read whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from sluiceway.common.kafka_io import admin, consumer, producer, watermark_offsets
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.tenant_index import SPAN_LIMIT, Block, block_key, index_topic, tenant_of_key
from sluiceway.common.tenant_index_io import ensure_index_topics, indexed_up_to

log = logging.getLogger("sluiceway.capture.indexer")

SEGMENT_RECORDS = 100_000
SEGMENT_S = 60.0
PUBLISH_EVERY_S = 1.0
DISCOVER_S = 5.0
RETRY_S = 5.0


@dataclass
class Segment:
    """What the indexer has read of one partition since ``lo``; ``pos`` is the next offset."""

    topic: str
    partition: int
    lo: int
    pos: int
    started: float
    records: int = 0
    by_tenant: dict[bytes, list[int]] = field(default_factory=dict)
    published_pos: int = -1
    published_at: float = 0.0

    def add(self, offset: int, key: bytes | None) -> None:
        self.records += 1
        self.pos = offset + 1
        tenant = tenant_of_key(key)
        if tenant is not None:
            self.by_tenant.setdefault(tenant, []).append(offset)

    def reach(self, position: int) -> None:
        """The consumer is at ``position`` with nothing left before it: transaction markers
        up to there hold no record, so the segment covers them too."""
        self.pos = max(self.pos, position)

    def full(self, now: float) -> bool:
        return (
            self.records >= SEGMENT_RECORDS
            or now - self.started >= SEGMENT_S
            or self.pos - self.lo >= SPAN_LIMIT // 2
        )

    def due(self, now: float) -> bool:
        return self.pos > self.published_pos and now - self.published_at >= PUBLISH_EVERY_S

    def block(self) -> Block:
        offsets = {t: np.array(o, np.int64) for t, o in self.by_tenant.items()}
        return Block(self.topic, self.partition, self.lo, self.pos, self.records, offsets)


class Indexer:
    """Index every change topic of this deployment until ``stop()``."""

    def __init__(self, kafka: KafkaSettings, stop: Callable[[], bool]) -> None:
        self.kafka, self.stop = kafka, stop
        self.segments: dict[tuple[str, int], Segment] = {}
        self.reader: Consumer = consumer(kafka, "sw-indexer", **{"enable.partition.eof": True})
        self.writer: Producer = producer(kafka, **{"linger.ms": 20})
        self.discovered_at = 0.0
        self.partitions: dict[str, int] = {}  # change topic -> its index topic's partitions

    def run(self) -> None:
        try:
            while not self.stop():
                self.step(time.monotonic())
        finally:
            self.close()

    def step(self, now: float) -> set[tuple[str, int]]:
        """Read one batch and publish what is due; the partitions read to their end."""
        if now - self.discovered_at >= DISCOVER_S:
            self._discover()
            self.discovered_at = now
        ended: set[tuple[str, int]] = set()
        for msg in self.reader.consume(10_000, 0.2):
            self._take(msg, ended)
        self._publish_due(time.monotonic())
        return ended

    def catch_up(self, timeout_s: float = 120.0) -> None:
        """Index everything written so far and publish it (a one-off snapshot's end)."""
        deadline = time.monotonic() + timeout_s
        self._discover()
        self.discovered_at = time.monotonic()
        ended: set[tuple[str, int]] = set()
        while time.monotonic() < deadline and not set(self.segments) <= ended:
            ended |= self.step(time.monotonic())
        self.close()  # publishes every segment not yet published as it stands

    def _take(self, msg: Message, ended: set[tuple[str, int]]) -> None:
        tp = (msg.topic() or "", msg.partition() or 0)
        segment = self.segments.get(tp)
        err = msg.error()
        if segment is None:
            return
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                segment.reach(msg.offset() or 0)
                ended.add(tp)
            else:
                log.warning("indexer read error on %s[%d]: %s", tp[0], tp[1], err)
            return
        offset = msg.offset() or 0
        if offset >= segment.pos:  # else fetched before a reassignment: already indexed
            segment.add(offset, msg.key())

    def _publish_due(self, now: float) -> None:
        for tp, segment in list(self.segments.items()):
            full = segment.full(now)
            if segment.due(now) or (full and segment.pos > segment.published_pos):
                self._publish(segment, now)
            if full and segment.pos == segment.published_pos:
                self.segments[tp] = Segment(tp[0], tp[1], segment.pos, segment.pos, now)
        self.writer.poll(0)

    def _publish(self, segment: Segment, now: float) -> None:
        block = segment.block()
        self.writer.produce(
            index_topic(self.kafka, segment.topic),
            key=block_key(segment.topic, segment.partition, segment.lo),
            value=block.encode(),
            partition=segment.partition % max(1, self._index_partitions(segment.topic)),
            on_delivery=_report,
        )
        segment.published_pos, segment.published_at = segment.pos, now

    def _index_partitions(self, topic: str) -> int:
        return self.partitions.get(topic, 1)

    def _discover(self) -> None:
        """Index change topics that appeared since the last look (new entities)."""
        prefix = f"{self.kafka.topic_prefix}cdc."
        listed = admin(self.kafka).list_topics(timeout=10).topics
        topics = {n: len(m.partitions) for n, m in listed.items() if n.startswith(prefix)}
        fresh = {t: n for t, n in topics.items() if not any(k[0] == t for k in self.segments)}
        if not fresh:
            return
        ensure_index_topics(self.kafka, fresh)
        # an index topic made earlier keeps its count: blocks go where readers look for them
        listed = admin(self.kafka).list_topics(timeout=10).topics
        for topic in topics:
            meta = listed.get(index_topic(self.kafka, topic))
            self.partitions[topic] = len(meta.partitions) if meta and meta.partitions else 1
        now = time.monotonic()
        for topic, count in fresh.items():
            reach = indexed_up_to(self.kafka, topic, count)
            for p in range(count):
                low = watermark_offsets(self.reader, TopicPartition(topic, p), 10.0)[0]
                start = max(low, reach.get(p, 0))
                self.segments[(topic, p)] = Segment(topic, p, start, start, now)
        self.reader.assign(
            [TopicPartition(t, p, s.pos) for (t, p), s in sorted(self.segments.items())]
        )
        log.info("indexing %d change topics (%s)", len(topics), ", ".join(sorted(fresh)))

    def close(self) -> None:
        for segment in self.segments.values():
            if segment.pos > segment.published_pos:
                self._publish(segment, time.monotonic())
        self.writer.flush(10)
        self.reader.close()


def _report(err: KafkaError | None, _msg: Message) -> None:
    if err is not None:
        # the segment is published again when it grows; meanwhile its range is read whole
        log.warning("could not publish a tenant index block: %s", err)


def keep_indexing(kafka: KafkaSettings, stop: Callable[[], bool]) -> None:
    """Index until ``stop()``; after a failure (Kafka away, a refused ACL) say so and start
    again from what was published: meanwhile runs read the ranges not covered whole."""
    while not stop():
        try:
            Indexer(kafka, stop).run()
        except Exception as exc:  # any failure: retry; capture itself goes on
            log.warning("the tenant index stopped (%s); starting it again in %.0fs", exc, RETRY_S)
            deadline = time.monotonic() + RETRY_S
            while time.monotonic() < deadline and not stop():
                time.sleep(0.2)


class Running:
    """The indexer's thread, and the way to end it before the process does: a daemon thread
    still inside librdkafka when the interpreter shuts down can crash the process."""

    def __init__(self, kafka: KafkaSettings, stop: Callable[[], bool]) -> None:
        self._done = threading.Event()
        self.thread = threading.Thread(
            target=keep_indexing,
            args=(kafka, lambda: stop() or self._done.is_set()),
            name="sw-indexer",
            daemon=True,
        )

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop indexing, publish what was read and wait for the thread (bounded)."""
        self._done.set()
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            log.warning("the tenant index thread did not stop within %.0fs", timeout_s)


def start(kafka: KafkaSettings, stop: Callable[[], bool]) -> Running:
    """The indexer on its own thread; it ends soon after ``stop()`` turns true or
    ``close()`` is called."""
    running = Running(kafka, stop)
    running.thread.start()
    return running
