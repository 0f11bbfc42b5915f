"""A sink's share of a run: commits, rebalances, and knowing when the run is complete.

Every sink of a run joins the run's consumer group (cooperative-sticky: a joining or
leaving sink moves only the partitions that must move). Before a partition is revoked,
its open files are published and its offsets committed, so the next owner starts exactly
where this one stopped; a partition lost without a revoke (session expired) has its open
files dropped instead, since the next owner reads those rows again.

Commits carry each partition's state as offset metadata (sinks/offsets.py). The run is
complete when every partition's commit says ``end``: then one sink lists the lake and
writes the manifest; the others see it and stop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sluiceway.common.errors import TransientError
from sluiceway.common.kafka_io import metadata_of
from sluiceway.lake import reader as lake_reader
from sluiceway.lake.storage import Lake
from sluiceway.sinks import metrics, recovery
from sluiceway.sinks.offsets import PartitionCommit, parse_commit
from sluiceway.sinks.rotation import RotationReason

if TYPE_CHECKING:
    from sluiceway.sinks.consume import RunReader

log = logging.getLogger("sluiceway.sink")
GROUP_CHECK_S = 1.0
REBALANCING = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNKNOWN_MEMBER_ID,
}  # how often a sink asks whether every partition has ended


def commit(reader: RunReader, only: set[int] | None = None) -> None:
    """Commit what the tracker allows, once the dead letters before it are acknowledged."""
    wanted = reader.tracker.committable(reader.writer.open_starts())
    changed = {
        p: c
        for p, c in wanted.items()
        if reader.commits.get(p) != c and (only is None or p in only)
    }
    if not changed:
        return
    if reader.producer.flush(30) != 0:
        raise TransientError(f"dead letters to {reader.dlq_topic} not acknowledged in 30s")
    offsets = [
        TopicPartition(reader.topic, p, c.offset, metadata=c.metadata())
        for p, c in sorted(changed.items())
    ]
    try:
        reader.consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() in REBALANCING:
            # Safe to leave for later: the files are published, and whoever owns a partition
            # next skips its published offsets (recovery) instead of writing them twice.
            log.warning("commit of %s deferred: %s", reader.topic, exc.args[0].str())
            return
        raise TransientError(f"cannot commit offsets of {reader.topic}: {exc.args[0]}") from exc
    metrics.observe_commit(
        reader.poll_times, {p: c.offset for p, c in changed.items()}, time.monotonic()
    )
    reader.commits.update(changed)
    reader.committed.update({p: c.offset for p, c in changed.items()})
    reader.tracker.committed(changed)
    if any(c.end for c in changed.values()):
        reader.group_checked_at = 0.0  # a partition just ended: maybe the run did


def read_commits(
    consumer: Consumer, topic: str, partitions: list[int]
) -> dict[int, PartitionCommit]:
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    except KafkaException as exc:
        raise TransientError(f"cannot read committed offsets of {topic}: {exc.args[0]}") from exc
    return {tp.partition: parse_commit(tp.offset, metadata_of(tp)) for tp in found}


def all_ended(reader: RunReader) -> bool:
    """Whether every partition's commit says ``end`` (asked at most every GROUP_CHECK_S)."""
    if len(reader.tracker.ended) == reader.tracker.partitions:
        return True
    now = time.monotonic()
    if now - reader.group_checked_at < GROUP_CHECK_S:
        return False
    reader.group_checked_at = now
    commits = read_commits(reader.consumer, reader.topic, list(range(reader.tracker.partitions)))
    if all(c.end for c in commits.values()):
        return True
    # The sink that wrote the manifest drops the run's topic and groups right after: a sink
    # holding no partition then finds no commits at all, and only the manifest says it ended.
    return lake_reader.run_manifest(reader.writer.lake, reader.plan.etl_id) is not None


def release(reader: RunReader) -> None:
    """Stopping (SIGTERM): publish every open file and commit, as before a revoke."""
    for partition in sorted(set(reader.writer.open_starts())):
        reader.writer.close_partition(partition, RotationReason.REBALANCE)
    commit(reader)
    log.info("stopping: open files of %s published and committed", reader.topic)


def abandon(reader: RunReader) -> None:
    """Drop every open file unpublished and forget what was read since the last commit:
    whatever revokes the partitions next (closing the consumer) must not commit past rows
    that are in no file. The next owner reads them again."""
    partitions = set(reader.tracker.consumed) | set(reader.writer.open_starts())
    for partition in sorted(partitions):
        reader.writer.forget(partition)
        reader.tracker.forget(partition)


class Rebalancer:
    """The consumer's rebalance callbacks for one run (librdkafka calls them in consume())."""

    def __init__(self, reader: RunReader, lake: Lake) -> None:
        self.reader, self.lake = reader, lake

    def _mine(self, partitions: list[TopicPartition]) -> list[int]:
        return sorted(tp.partition for tp in partitions if tp.topic == self.reader.topic)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = self._mine(partitions)
        if not mine:
            return
        reader = self.reader
        if reader.leaving:
            log.info("assigned partitions %s of %s while leaving: not taken", mine, reader.topic)
            return
        commits = read_commits(consumer, reader.topic, mine)
        for partition, commit_ in commits.items():
            reader.tracker.take_over(partition, commit_)
            reader.commits[partition] = commit_
        open_ones = [p for p in mine if p not in reader.tracker.ended]
        plan = reader.plan
        reader.writer.adopt(recovery.recover(self.lake, plan.etl_id, plan.table_dirs, open_ones))
        log.info("assigned partitions %s of %s (ended: %s)", mine, reader.topic,
                 sorted(set(mine) & reader.tracker.ended))  # fmt: skip

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = self._mine(partitions)
        if not mine:
            return
        reader = self.reader
        for partition in mine:
            reader.writer.close_partition(partition, RotationReason.REBALANCE)
        commit(reader, only=set(mine))
        self._forget(mine)
        log.info("revoked partitions %s of %s: files published, offsets committed", mine,
                 reader.topic)  # fmt: skip

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = self._mine(partitions)
        self._forget(mine)  # aborts their open files: the next owner writes those rows
        log.warning(
            "lost partitions %s of %s; their open files were dropped", mine, self.reader.topic
        )

    def _forget(self, partitions: list[int]) -> None:
        reader = self.reader
        for partition in partitions:
            reader.writer.forget(partition)
            reader.tracker.forget(partition)
            reader.commits.pop(partition, None)
            reader.committed.pop(partition, None)
