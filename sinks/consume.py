"""Reading a run's topic: classifying messages, dead letters, commits. I/O (Kafka).

Offsets are committed synchronously and only up to what ``OffsetTracker`` allows, after
the dead letters before them are acknowledged, so a crash never skips a message
(sinks/membership.py: commits, rebalances, and when the run is complete).

In a Parquet run, consecutive events of one partition and writer schema are decoded
together, straight to Arrow (``avro_batch``); anything else, and any batch the decode
doubts, goes message by message through fastavro, which also names dead letters' reasons.

While the disk guard says the destination is short of space, the consumer's partitions
are paused but it keeps polling, so the group does not evict it; librdkafka resumes each
partition from the last message handed to us, so pausing skips nothing.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, Message, Producer

from sluiceway.common.avro_batch import BatchDecoder, lake_table
from sluiceway.common.codec import HEADER_LEN, MAGIC, Codec
from sluiceway.common.errors import InvalidEventError, TransientError
from sluiceway.common.health import HEALTH
from sluiceway.common.runs import END_MARKER, MARKER_HEADER
from sluiceway.lake import layout
from sluiceway.lake.errors import LakeWriteError, RunTimeoutError
from sluiceway.lake.manifest import RunManifest
from sluiceway.sinks import membership, metrics
from sluiceway.sinks.disk_guard import DiskGuard
from sluiceway.sinks.metrics import LagMonitor, PollTimes
from sluiceway.sinks.offsets import OffsetTracker, PartitionCommit
from sluiceway.sinks.plan import RunPlan, TableSchema
from sluiceway.sinks.rows import event_row
from sluiceway.sinks.writer import RunWriter

log = logging.getLogger("sluiceway.sink")
FLOWING_WAIT_S = 0.1  # first wait of a poll: a batch fills in ~30 ms while events flow


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
    dead_letters: int = 0  # by this process (the run's count travels in the commits)
    commits: dict[int, PartitionCommit] = field(default_factory=dict)  # last made or found
    committed: dict[int, int] = field(default_factory=dict)  # their offsets, for the lag
    group_checked_at: float = 0.0
    guard: DiskGuard | None = None
    lag: LagMonitor | None = None
    poll_times: PollTimes = field(default_factory=PollTimes)
    batch_bytes: int = 0  # size of the last batch: what the next one may add to the disk
    decoder: BatchDecoder = field(default_factory=BatchDecoder)
    batchable: dict[bytes, bool] = field(default_factory=dict)  # header -> selected schema
    one_by_one: set[bytes] = field(default_factory=set)  # headers decoded event by event
    # set as the consumer closes: a rebalance then (the group moving while this sink leaves)
    # may assign partitions, which it must not take over (reading their commits timed out)
    leaving: bool = False


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
        if reader.tracker.saw_end(partition, offset, marker_dead_letters(msg)):
            return reader.writer.close_partition(partition)
        return 0  # another end marker of an ended partition: it ends nothing new
    if past_end(reader, partition, offset):
        return 0
    reader.tracker.saw(partition, offset)
    return handle_event(reader, msg, partition, offset)


def past_end(reader: RunReader, partition: int, offset: int) -> bool:
    marker = reader.tracker.markers.get(partition)
    if marker is not None and offset > marker:
        log.warning("ignoring offset %d of partition %d after its end marker", offset, partition)
        return True
    return False


def handle_event(reader: RunReader, msg: Message, partition: int, offset: int) -> int:
    """Decode, route and buffer one event already accounted for in the tracker."""
    value = msg.value() or b""
    try:
        event = reader.codec.decode(value)
        target = reader.plan.route(value, event)
    except InvalidEventError as exc:
        dead_letter(reader, msg, str(exc))
        return 0
    reader.rows += 1
    row = event_row(event, reader.plan.etl_id, list(target.columns), target.key, target.uuids)
    return reader.writer.add(target.table, partition, offset, target.schema, target.schema_id, row)


@dataclass
class Segment:
    """Consecutive events of one partition and writer schema, offsets ascending."""

    partition: int
    header: bytes  # the values' single-object header: their writer schema
    messages: list[Message] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)


def batchable(reader: RunReader, header: bytes) -> bool:
    """Whether values with this header may be decoded with their neighbours (remembered).

    Only formats that take batches (Parquet) take Arrow tables; CSV encodes row by row
    anyway. A value of an unknown or unselected schema goes alone, to be dead-lettered with
    its reason.
    """
    selected = (
        reader.writer.fmt.batches
        and len(header) == HEADER_LEN
        and header[:2] == MAGIC
        and reader.codec.schema_of(header) is not None  # learns a new schema version
        and (target := reader.plan.schemas.get(header[2:].hex())) is not None
        and target.table in reader.plan.table_dirs
    )
    if len(reader.batchable) < 64:  # junk values must not grow it without bound
        reader.batchable[header] = selected
    return selected


def handle_segment(reader: RunReader, segment: Segment | None, polled_at: float) -> int:
    """A segment's events, decoded together, or one by one (fastavro, dead letters) if the
    batch decode is in any doubt. Bookkeeping is per segment, not per event."""
    if segment is None:
        return 0
    partition, offsets = segment.partition, segment.offsets
    reader.poll_times.saw(partition, offsets[0], polled_at)
    reader.poll_times.saw(partition, offsets[-1], polled_at)  # marks all between, as ascending
    first = bisect.bisect_right(offsets, reader.tracker.consumed.get(partition, -1))
    marker = reader.tracker.markers.get(partition)
    end = len(offsets) if marker is None else bisect.bisect_right(offsets, marker)
    for offset in offsets[max(first, end) :]:
        past_end(reader, partition, offset)  # logs each ignored event
    messages, offsets = segment.messages[first:end], offsets[first:end]
    if not offsets:
        return 0  # delivered again: already buffered or written
    reader.tracker.saw(partition, offsets[-1])
    values = segment.values[first:end]
    rows = decode_segment(reader, segment.header, messages, values)
    if rows is None:
        # a schema the batch decoder leaves to fastavro stays so: said once per schema
        level = logging.DEBUG if segment.header in reader.one_by_one else logging.WARNING
        reader.one_by_one.add(segment.header)
        log.log(
            level, "%d events of partition %d from offset %d not decoded together; one by one",
            len(offsets), partition, offsets[0],
        )  # fmt: skip
        pairs = zip(messages, offsets, strict=True)
        return sum(handle_event(reader, m, partition, o) for m, o in pairs)
    target, table = rows
    reader.rows += len(offsets)
    return reader.writer.add_table(
        target.table, partition, offsets, target.schema, target.schema_id, table
    )


def decode_segment(
    reader: RunReader, header: bytes, messages: list[Message], values: list[bytes]
) -> tuple[TableSchema, pa.Table] | None:
    """The lake rows of a segment's events, or None when they must go one by one."""
    schema = reader.codec.schema_of(header)
    target = reader.plan.schemas.get(header[2:].hex())
    if schema is None or target is None or not target.batch:
        return None
    frame = reader.decoder.decode(schema, values, [m.key() for m in messages])
    if frame is None or not frame["tenant_id"].is_in(list(reader.plan.tenants)).all():
        return None  # an unselected tenant is dead-lettered by the one-by-one path
    try:
        table = lake_table(frame, target.columns, target.schema, reader.plan.etl_id, target.key)
    except Exception as exc:  # polars/Arrow raise many kinds; the rows still get written
        log.warning("batch of %d events not converted (%s); decoding one by one", len(values), exc)
        return None
    return target, table


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
    reader.tracker.dead_lettered(*position(msg))
    metrics.DEAD_LETTERS.inc()
    log.warning(
        "dead letter partition=%d offset=%d reason=%s", msg.partition(), msg.offset(), reason
    )


def handle_batch(reader: RunReader, messages: list[Message]) -> int:
    """Handle what one consume() returned; returns how many files were published.

    Consecutive events of one partition and writer schema are decoded together
    (``handle_segment``); everything else goes message by message, in order. This loop
    runs once per event, so it stays flat: no call it can spare.
    """
    published, size, polled_at = 0, 0, time.monotonic()
    known = reader.batchable
    segment: Segment | None = None
    for msg in messages:
        err = msg.error()
        if err is not None:
            consumer_error(reader, err)
            continue
        value = msg.value() or b""
        size += len(value)
        partition, offset, header = msg.partition(), msg.offset(), value[:HEADER_LEN]
        alone = not (known[header] if header in known else batchable(reader, header))
        # headers mark end markers; None positions are errors: the one-by-one path knows both
        if (
            alone
            or msg.headers()
            or len(value) == HEADER_LEN
            or partition is None
            or offset is None
        ):
            published += handle_segment(reader, segment, polled_at)
            segment = None
            reader.poll_times.saw(*position(msg), polled_at)
            published += handle(reader, msg)
            continue
        if segment is not None and (
            (partition, header) != (segment.partition, segment.header)
            or offset <= segment.offsets[-1]
        ):
            published += handle_segment(reader, segment, polled_at)
            segment = None
        segment = segment or Segment(partition, header)
        segment.messages.append(msg)
        segment.offsets.append(offset)
        segment.values.append(value)
    published += handle_segment(reader, segment, polled_at)
    reader.batch_bytes = size or reader.batch_bytes
    return published


def consumer_error(reader: RunReader, err: KafkaError) -> None:
    if err.fatal():
        raise TransientError(f"consumer of {reader.topic} failed: {err.str()}")
    log.warning("consumer of %s: %s", reader.topic, err.str())


def poll(reader: RunReader, batch: int, timeout_s: float) -> int:
    """Consume one batch; returns how many files were published.

    consume() waits for a full batch or its whole timeout, so a first short wait hands
    over a partial batch (a run's tail, a slow fetch) at once. An idle topic is waited on
    for its first record only (up to ``timeout_s``), then for the rest of a batch as while
    flowing: waiting for a whole batch there cost a second at every run's start and tail.
    """
    wait = min(timeout_s, FLOWING_WAIT_S)
    messages = reader.consumer.consume(batch, timeout=wait)
    if not messages:
        first = reader.consumer.poll(timeout_s)
        more = first is not None and batch > 1
        rest = reader.consumer.consume(batch - 1, timeout=wait) if more else []
        messages = [first, *rest] if first is not None else []
    return handle_batch(reader, messages) + reader.writer.tick()


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
        membership.commit(reader)
    return True


def consume_until_complete(
    reader: RunReader,
    batch: int,
    timeout_s: float,
    expired: Callable[[], bool],
    progress: Callable[[int], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> bool:
    """Read until every partition of the run has ended (in any sink), committing after
    each file and each end marker. False: asked to stop first (its files are published
    and committed, so the partitions' next owners start where this sink stopped)."""
    while not membership.all_ended(reader):
        HEALTH.beat()  # each round waits at most the poll timeout: a silent loop is stuck
        if stopping():
            membership.release(reader)
            return False
        if expired():
            raise_incomplete(reader)
        if reader.lag is not None:
            reader.lag.maybe_update(reader.committed)
        try:
            if waiting(reader, timeout_s):
                continue
            if (
                poll(reader, batch, timeout_s)
                or reader.tracker.markers.keys() - reader.tracker.ended
            ):
                membership.commit(reader)
        except LakeWriteError:
            membership.abandon(reader)
            raise
        if progress is not None:
            progress(reader.rows)
    return True


def raise_incomplete(reader: RunReader) -> None:
    membership.abandon(reader)
    raise RunTimeoutError(
        f"run {reader.plan.etl_id} incomplete: no end marker yet on partitions "
        f"{sorted(set(range(reader.tracker.partitions)) - reader.tracker.ended)} of "
        f"{reader.topic} here; it resumes where it stopped"
    )


def notification(manifest: RunManifest) -> dict[str, Any]:
    """The completion notice of a run, as the topic and the webhook receive it."""
    return {
        "event": "run_complete",
        "destination": manifest.spec.destination,
        "etl_id": manifest.etl_id,
        "type": manifest.type,
        "manifest": layout.run_manifest_path(manifest.etl_id),
        "rows": manifest.rows(),
    }


def notify(reader: RunReader, manifest: RunManifest) -> dict[str, Any]:
    """Tell subscribers the run's files are ready; at least once. Returns the notice."""
    return publish_notice(reader.producer, reader.notify_topic, manifest)


def publish_notice(producer: Producer, topic: str, manifest: RunManifest) -> dict[str, Any]:
    note = notification(manifest)
    producer.produce(topic, key=manifest.etl_id.encode(), value=json.dumps(note))
    if producer.flush(30) != 0:
        raise TransientError(f"completion notice of {manifest.etl_id} not acknowledged")
    return note
