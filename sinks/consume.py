"""Reading a run's topic: classifying messages, dead letters, commits. I/O (Kafka).

Offsets are committed synchronously and only up to what ``OffsetTracker`` allows, after
the dead letters before them are acknowledged, so a crash never skips a message.

While the disk guard says the destination is short of space, the consumer's partitions
are paused but it keeps polling, so the group does not evict it; librdkafka resumes each
partition from the last message handed to us, so pausing skips nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from sinks import metrics
from sinks.disk_guard import DiskGuard
from sinks.errors import LakeWriteError, RunTimeoutError
from sinks.metrics import LagMonitor, PollTimes
from sinks.offsets import OffsetTracker
from sinks.plan import RunPlan
from sinks.rows import event_row
from sinks.writer import RunWriter
from sluiceway.codec import Codec
from sluiceway.errors import InvalidEventError, TransientError
from sluiceway.runs import END_MARKER, MARKER_HEADER

log = logging.getLogger("sluiceway.sink")


@dataclass
class RunReader:
    """Everything the consume loop touches, for one run."""

    topic: str
    dlq_topic: str
    notify_topic: str
    consumer: Consumer
    producer: Producer
    codec: Codec
    plan: RunPlan
    writer: RunWriter
    tracker: OffsetTracker
    rows: int = 0
    dead_letters: int = 0
    upstream_dead_letters: int = 0  # what the processor dead-lettered, from its end markers
    committed: dict[int, int] = field(default_factory=dict)
    guard: DiskGuard | None = None
    lag: LagMonitor | None = None
    poll_times: PollTimes = field(default_factory=PollTimes)
    batch_bytes: int = 0  # size of the last batch: what the next one may add to the disk


def is_end_marker(msg: Message) -> bool:
    return any(h[0] == MARKER_HEADER and h[1] == END_MARKER for h in msg.headers() or [])


def marker_dead_letters(msg: Message) -> int:
    try:
        return int(json.loads(msg.value() or b"{}").get("dead_letters", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def position(msg: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message, which always has both."""
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        raise TransientError(f"message of {msg.topic()} without partition or offset")
    return partition, offset


def handle(reader: RunReader, msg: Message) -> int:
    """Process one message; returns how many files were published meanwhile."""
    partition, offset = position(msg)
    if offset <= reader.tracker.consumed.get(partition, -1):
        return 0  # delivered again (a reset fetch position): already buffered or written
    if is_end_marker(msg):
        if partition not in reader.tracker.markers:
            reader.upstream_dead_letters += marker_dead_letters(msg)
        reader.tracker.saw_end(partition, offset)
        return reader.writer.close_partition(partition)
    marker = reader.tracker.markers.get(partition)
    if marker is not None and offset > marker:
        log.warning("ignoring offset %d of partition %d after its end marker", offset, partition)
        return 0
    reader.tracker.saw(partition, offset)
    value = msg.value() or b""
    try:
        event = reader.codec.decode(value)
        target = reader.plan.route(value, event)
    except InvalidEventError as exc:
        dead_letter(reader, msg, str(exc))
        return 0
    reader.rows += 1
    row = event_row(event, reader.plan.etl_id, list(target.columns))
    return reader.writer.add(target.table, partition, offset, target.schema, target.schema_id, row)


def dead_letter(reader: RunReader, msg: Message, reason: str) -> None:
    headers = {
        "sw-error": " ".join(reason.split())[:1000].encode(),
        "sw-topic": reader.topic.encode(),
        "sw-partition": str(msg.partition()).encode(),
        "sw-offset": str(msg.offset()).encode(),
    }
    reader.producer.produce(
        reader.dlq_topic, key=msg.key(), value=msg.value(), headers=list(headers.items())
    )
    reader.producer.poll(0)
    reader.dead_letters += 1
    metrics.DEAD_LETTERS.inc()
    log.warning(
        "dead letter partition=%d offset=%d reason=%s", msg.partition(), msg.offset(), reason
    )


def commit(reader: RunReader) -> None:
    """Commit what the tracker allows, once the dead letters before it are acknowledged."""
    wanted = reader.tracker.committable(reader.writer.open_starts())
    changed = {p: o for p, o in wanted.items() if reader.committed.get(p) != o}
    if not changed:
        return
    if reader.producer.flush(30) != 0:
        raise TransientError(f"dead letters to {reader.dlq_topic} not acknowledged in 30s")
    try:
        reader.consumer.commit(
            offsets=[TopicPartition(reader.topic, p, o) for p, o in sorted(changed.items())],
            asynchronous=False,
        )
    except KafkaException as exc:
        raise TransientError(f"cannot commit offsets of {reader.topic}: {exc.args[0]}") from exc
    metrics.observe_commit(reader.poll_times, changed, time.monotonic())
    reader.committed.update(changed)


def handle_batch(reader: RunReader, messages: list[Message]) -> int:
    """Handle what one consume() returned; returns how many files were published."""
    published, size, polled_at = 0, 0, time.monotonic()
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise TransientError(f"consumer of {reader.topic} failed: {err.str()}")
            log.warning("consumer of %s: %s", reader.topic, err.str())
            continue
        reader.poll_times.saw(*position(msg), polled_at)
        size += len(msg.value() or b"")
        published += handle(reader, msg)
    reader.batch_bytes = size or reader.batch_bytes
    return published


def poll(reader: RunReader, batch: int, timeout_s: float) -> int:
    """Consume one batch; returns how many files were published."""
    published = handle_batch(reader, reader.consumer.consume(batch, timeout=timeout_s))
    return published + reader.writer.tick()


def waiting(reader: RunReader, timeout_s: float) -> bool:
    """While the destination is short of space: keep the consumer alive, read nothing new."""
    guard = reader.guard
    if guard is None:
        return False
    was_paused = guard.paused
    if not guard.blocked(reader.batch_bytes):
        if was_paused:
            reader.consumer.resume(reader.consumer.assignment())
        return False
    # pausing again every round also covers partitions a rebalance assigned meanwhile
    reader.consumer.pause(reader.consumer.assignment())
    # paused partitions return nothing, but whatever does arrive is handled: never dropped
    if handle_batch(reader, reader.consumer.consume(1, timeout=timeout_s)):
        commit(reader)
    return True


def consume_until_complete(
    reader: RunReader,
    batch: int,
    timeout_s: float,
    expired: Callable[[], bool],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Read until every partition's end marker is seen, committing after each file."""
    while not reader.tracker.complete:
        if expired():
            raise_incomplete(reader)
        if reader.lag is not None:
            reader.lag.maybe_update(reader.committed)
        try:
            if waiting(reader, timeout_s):
                continue
            if poll(reader, batch, timeout_s):
                commit(reader)
        except LakeWriteError:
            reader.writer.abort_all()
            raise
        if progress is not None:
            progress(reader.rows)


def raise_incomplete(reader: RunReader) -> None:
    reader.writer.abort_all()
    raise RunTimeoutError(
        f"run {reader.plan.etl_id} incomplete: no end marker yet on partitions "
        f"{reader.tracker.missing()} of {reader.topic}; it resumes where it stopped"
    )


def notification(manifest: dict[str, Any]) -> dict[str, Any]:
    """The completion notice of a run, as the topic and the webhook receive it."""
    return {
        "event": "run_complete",
        "destination": manifest["spec"]["destination"],
        "etl_id": manifest["etl_id"],
        "type": manifest["type"],
        "manifest": f"_runs/{manifest['etl_id']}.json",
        "rows": {t: v["rows"] for t, v in manifest["tables"].items()},
    }


def notify(reader: RunReader, manifest: dict[str, Any]) -> dict[str, Any]:
    """Tell subscribers the run's files are ready; at least once. Returns the notice."""
    return publish_notice(reader.producer, reader.notify_topic, manifest)


def publish_notice(producer: Producer, topic: str, manifest: dict[str, Any]) -> dict[str, Any]:
    note = notification(manifest)
    producer.produce(topic, key=manifest["etl_id"].encode(), value=json.dumps(note))
    if producer.flush(30) != 0:
        raise TransientError(f"completion notice of {manifest['etl_id']} not acknowledged")
    return note
