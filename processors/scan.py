"""Passes over the change topics before a run's faust worker starts.

- A full run must contain exactly one row per live entity at the cut. Change topics hold
  every version (compaction is lazy), so a first pass remembers, per key, the offset of its
  last record before the cut. Only keys and offsets are kept: about a hundred bytes each.
- A run with opt-outs must know which project each issue belongs to before it meets the
  issue's comments and worklogs, which may come first; a pass over the issue topic says.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, TopicPartition

from processors.errors import ScanTimeoutError
from sluiceway.codec import Codec
from sluiceway.errors import InvalidEventError
from sluiceway.kafka_io import consumer
from sluiceway.partitioning import tenant_partitions
from sluiceway.runs import RunRecord
from sluiceway.settings import KafkaSettings

# topic -> key -> offset of the key's last record before the cut (DELETED: a tombstone)
Latest = dict[str, dict[bytes, int]]
DELETED = -1
Ranges = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> [start, cut)


def scan(kafka: KafkaSettings, group: str, ranges: Ranges, visit: Callable[[Message], None],
         timeout_s: float = 600) -> None:  # fmt: skip
    """Call ``visit`` on every record of every range, in offset order per partition."""
    todo = {tp: cut for tp, (start, cut) in ranges.items() if cut > start}
    if not todo:
        return
    reader = consumer(kafka, group=group, **{"enable.partition.eof": True})
    reader.assign([TopicPartition(t, p, ranges[(t, p)][0]) for (t, p) in todo])
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if time.monotonic() > deadline:
                raise ScanTimeoutError(
                    f"could not read {sorted(todo)} up to the cut in {timeout_s:.0f}s"
                )
            for msg in reader.consume(10_000, 0.5):
                _step(msg, todo, visit)
    finally:
        reader.close()


def _step(msg: Message, todo: dict[tuple[str, int], int], visit: Callable[[Message], None]) -> None:
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
    if offset < cut:
        visit(msg)
    if offset >= cut - 1:
        del todo[tp]


def latest_offsets(kafka: KafkaSettings, run: RunRecord) -> Latest:
    latest: Latest = {topic: {} for topic in run.cut}

    def visit(msg: Message) -> None:
        key, offset = msg.key(), msg.offset()
        if key is not None and offset is not None:
            latest[msg.topic() or ""][key] = offset if msg.value() is not None else DELETED

    ranges = {
        (t, p): (run.start[t][p], cut) for t, parts in run.cut.items() for p, cut in parts.items()
    }
    scan(kafka, f"sw-scan-{run.etl_id}", ranges, visit)
    return latest


def issue_projects(
    kafka: KafkaSettings, run: RunRecord, codec: Codec
) -> dict[tuple[str, int], str]:
    """(tenant, issue id) -> project key, for every issue of the run's tenants up to the cut."""
    topic = kafka.cdc_topic("issue")
    parts = set().union(
        *(tenant_partitions(t, run.run_partitions, kafka.spread) for t in run.tenants)
    )
    cut = run.cut.get(topic) or {}
    ranges = {(topic, p): (0, cut[p]) for p in parts if p in cut}
    found: dict[tuple[str, int], str] = {}

    def visit(msg: Message) -> None:
        try:
            event = codec.decode(msg.value())
        except InvalidEventError:
            return  # the run itself dead-letters it when it meets it
        if event["after"] is not None:
            found[(event["tenant_id"], event["entity_id"])] = event["after"]["project_key"]

    scan(kafka, f"sw-scan-issues-{run.etl_id}", ranges, visit)
    return found
