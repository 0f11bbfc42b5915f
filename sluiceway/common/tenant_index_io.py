"""Reading the tenant offset index (sluiceway/common/tenant_index.py) from its topics.

Block ``(topic, p, lo)`` lives in partition ``p`` of the topic's index topic (modulo its
partition count), so a run reads only the index partitions of its own change-topic
partitions. Only the latest value of each block key counts (it is the widest version);
a tombstone drops the key.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from sluiceway.common.errors import TransientError
from sluiceway.common.kafka_io import admin, consumer, ensure_topics, ready, watermark_offsets
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.tenant_index import Coverage, Slice, decode_for, index_topic

# Compacted: a block re-published wider replaces its older versions. Short segments let
# the cleaner reach them soon (it never cleans the active segment).
INDEX_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(600_000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(86_400_000),
}

TP = tuple[str, int]


def ensure_index_topics(kafka: KafkaSettings, change_topics: dict[str, int]) -> None:
    """Create each change topic's index topic with as many partitions as it has."""
    by_count: dict[int, list[str]] = {}
    for topic, partitions in change_topics.items():
        by_count.setdefault(partitions, []).append(index_topic(kafka, topic))
    for partitions, names in by_count.items():
        ensure_topics(kafka, names, partitions, INDEX_TOPIC_CONFIG)


def read_blocks(
    kafka: KafkaSettings, change_topics: Iterable[str], partitions: Iterable[int],
    timeout: float = 60.0,
) -> dict[str, list[bytes]]:  # fmt: skip
    """The latest encoded block of every key in the index partitions of these change-topic
    partitions, per change topic; one consumer reads them all side by side."""
    listed = admin(kafka).list_topics(timeout=timeout).topics
    wanted: dict[TopicPartition, str] = {}
    for change_topic in change_topics:
        meta = listed.get(index_topic(kafka, change_topic))
        if meta is None or meta.error is not None or not meta.partitions:
            continue
        for p in {p % len(meta.partitions) for p in partitions}:
            wanted[TopicPartition(index_topic(kafka, change_topic), p)] = change_topic
    found: dict[str, list[bytes]] = {}
    if not wanted:
        return found
    reader = consumer(kafka, group="sw-index-reader", **{"enable.partition.eof": False})
    try:
        latest = _latest(reader, list(wanted), timeout)
    finally:
        reader.close()
    for (topic, partition), values in latest.items():
        change_topic = wanted[TopicPartition(topic, partition)]
        found.setdefault(change_topic, []).extend(values.values())
    return found


def _latest(
    reader: Consumer, tps: list[TopicPartition], timeout: float
) -> dict[tuple[str, int], dict[bytes, bytes]]:
    """Each partition read from its start to its high watermark: the latest value per key."""
    latest: dict[tuple[str, int], dict[bytes, bytes]] = {}
    todo: dict[tuple[str, int], int] = {}
    starts = []
    for tp in tps:
        low, high = watermark_offsets(reader, tp, timeout)
        latest[(tp.topic, tp.partition)] = {}
        if high > low:
            todo[(tp.topic, tp.partition)] = high
            starts.append(TopicPartition(tp.topic, tp.partition, low))
    reader.assign(starts)
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            raise TransientError(f"could not read the tenant index {sorted(todo)} in {timeout}s")
        for msg in ready(reader, 10_000, wait=0.05):
            key, offset = msg.key(), msg.offset()
            if msg.error() or key is None or offset is None:
                continue
            at = (msg.topic() or "", msg.partition() or 0)
            values = latest[at]
            value = msg.value()
            if value:
                values[key] = value
            else:
                values.pop(key, None)
            if offset + 1 >= todo.get(at, 0):
                todo.pop(at, None)
        for tp in reader.position([TopicPartition(t, p) for t, p in todo]):
            if tp.offset >= todo[(tp.topic, tp.partition)]:
                todo.pop((tp.topic, tp.partition), None)
    return latest


def load_coverage(
    kafka: KafkaSettings, change_topics: Iterable[str], partitions: Iterable[int],
    tenants: Iterable[str],
) -> dict[TP, Coverage]:  # fmt: skip
    """What the index says about ``tenants`` in each of these change-topic partitions
    (a partition without blocks gets an empty Coverage: everything in it is read whole)."""
    topics, wanted_parts = list(change_topics), sorted(set(partitions))
    wanted = frozenset(t.encode() for t in tenants)
    found: dict[TP, list[Slice]] = {}
    for topic, values in read_blocks(kafka, topics, wanted_parts).items():
        for value in values:
            block_topic, partition, piece = decode_for(value, wanted)
            if block_topic == topic and partition in wanted_parts:
                found.setdefault((topic, partition), []).append(piece)
    return {(t, p): Coverage.of(found.get((t, p), [])) for t in topics for p in wanted_parts}


def indexed_up_to(kafka: KafkaSettings, change_topic: str, partitions: int) -> dict[int, int]:
    """Per partition of ``change_topic``, the highest offset its blocks reach (the indexer
    continues from there after a restart)."""
    reach: dict[int, int] = {}
    for values in read_blocks(kafka, [change_topic], range(partitions)).values():
        for value in values:
            topic, partition, piece = decode_for(value, frozenset())
            if topic == change_topic:
                reach[partition] = max(reach.get(partition, 0), piece.hi)
    return reach
