"""The first pass of a full run: which offset holds each key's latest version.

A full run must contain exactly one row per live entity at the cut. Change topics hold
every version (compaction is lazy), so before the faust worker forwards anything this
pass reads the run's partitions up to the cut and remembers, per key, the offset of its
last record. Only keys and offsets are kept: about a hundred bytes per entity.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, Message, TopicPartition

from processors.errors import ScanTimeoutError
from sluiceway.kafka_io import consumer
from sluiceway.runs import RunRecord
from sluiceway.settings import KafkaSettings

# topic -> key -> offset of the key's last record before the cut (DELETED: a tombstone)
Latest = dict[str, dict[bytes, int]]
DELETED = -1


def latest_offsets(kafka: KafkaSettings, run: RunRecord, timeout_s: float = 600) -> Latest:
    todo = {
        (topic, p): cut
        for topic, parts in run.cut.items()
        for p, cut in parts.items()
        if cut > run.start[topic][p]
    }
    latest: Latest = {topic: {} for topic in run.cut}
    if not todo:
        return latest
    reader = consumer(kafka, group=f"sw-scan-{run.etl_id}", **{"enable.partition.eof": True})
    reader.assign([TopicPartition(t, p, run.start[t][p]) for (t, p) in todo])
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if time.monotonic() > deadline:
                raise ScanTimeoutError(
                    f"could not read {sorted(todo)} up to the cut in {timeout_s:.0f}s"
                )
            for msg in reader.consume(10_000, 0.5):
                _record(msg, todo, latest)
    finally:
        reader.close()
    return latest


def _record(msg: Message, todo: dict[tuple[str, int], int], latest: Latest) -> None:
    tp = (msg.topic() or "", msg.partition() or 0)
    cut, offset = todo.get(tp), msg.offset() or 0
    if cut is None:
        return
    err = msg.error()
    if err is not None:
        # end of partition before the cut: compaction removed its tail records
        if err.code() == KafkaError._PARTITION_EOF:
            del todo[tp]
        return
    key = msg.key()
    if offset < cut and key is not None:
        latest[tp[0]][key] = offset if msg.value() is not None else DELETED
    if offset >= cut - 1:
        del todo[tp]
