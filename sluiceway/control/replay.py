"""Replay: the cut of a backup "as of TIME", found in the change topics' time index.

Capture stamps every change event's Kafka timestamp with its commit time (``source_ts``,
floored to the millisecond), so ``offsets_for_times`` finds where TIME falls in each
partition. The run is then an ordinary full run from the partition's start to that cut.
``source_ts`` has microseconds: events of TIME's own millisecond are decoded and compared
exactly, so an event committed at or before TIME is in and one committed after it is out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition

from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError, StackDownError
from sluiceway.common.kafka_io import consumer, watermark_offsets
from sluiceway.common.runs import Offsets
from sluiceway.common.schema_registry import evolving
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import UTC_RANGE

EXPECTED = "expected an ISO 8601 time with a UTC offset, e.g. 2026-11-22T10:15:00Z"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (offset, Kafka timestamp in ms, source_ts in µs or None for a tombstone)
Stamp = tuple[int, int, int | None]


def parse_time(text: str, now: datetime) -> datetime:
    """TIME as an aware UTC datetime; unparsable, offset-less or future values are refused."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--to {text!r} is not a time; {EXPECTED}") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"--to {text!r} has no UTC offset; {EXPECTED}")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"--to {text!r} {UTC_RANGE}; {EXPECTED}") from None
    if value > now:
        raise ConfigError(
            f"--to {text!r} is in the future (now is {now.astimezone(UTC).isoformat()}); "
            "expected a time at or before now"
        )
    return value


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def boundary_cut(stamps: Iterable[Stamp], to_us: int, end: int) -> int:
    """The first offset whose event was committed after ``to_us``; ``end`` when none is.

    ``stamps`` start at the first record of TIME's millisecond. A tombstone carries no
    ``source_ts``: it shares its delete's timestamp and stays on the delete's side.
    """
    to_ms = to_us // 1000
    for offset, stamp_ms, source_us in stamps:
        if stamp_ms > to_ms or (source_us is not None and source_us > to_us):
            return offset
    return end


def time_cut(
    kafka_consumer: Consumer, codec: Codec, partitions: list[tuple[str, int]], to: datetime
) -> Offsets:
    """Per (topic, partition), the offset of the first event committed after ``to``."""
    to_us = micros(to)
    query = [TopicPartition(t, p, to_us // 1000) for t, p in partitions]
    found = kafka_consumer.offsets_for_times(query, timeout=30)
    cut: Offsets = {}
    for tp in found:
        _low, high = watermark_offsets(kafka_consumer, tp, 10)
        first = tp.offset if tp.offset >= 0 else high  # -1: nothing at or after TIME's ms
        stamps = _stamps(kafka_consumer, codec, tp.topic, tp.partition, first, high)
        cut.setdefault(tp.topic, {})[tp.partition] = boundary_cut(stamps, to_us, high)
    return cut


def _stamps(
    reader: Consumer, codec: Codec, topic: str, partition: int, start: int, end: int
) -> Iterator[Stamp]:
    """The records of [start, end) with their times, read lazily: the caller stops early."""
    if start >= end:
        return
    reader.assign([TopicPartition(topic, partition, start)])
    deadline, position = time.monotonic() + 60, start
    while position < end:
        if time.monotonic() > deadline:
            raise StackDownError(f"could not read {topic}[{partition}] at offset {position}")
        for msg in reader.consume(500, 1.0):
            if msg.error() or (offset := msg.offset()) is None:
                continue
            value = msg.value()
            source = micros(codec.decode(value)["source_ts"]) if value is not None else None
            position = offset + 1
            yield offset, msg.timestamp()[1], source


def replay_cut(kafka: KafkaSettings, partitions: list[tuple[str, int]], to: datetime) -> Offsets:
    """``time_cut`` with a consumer of its own."""
    reader = consumer(kafka, group=f"sw-replay-cut-{time.monotonic_ns()}")
    try:
        # events written after a change of a source table name a registered schema version
        return time_cut(reader, evolving(Codec(), kafka), partitions, to)
    finally:
        reader.close()


def require_events(cut: Offsets, start: Offsets, to: datetime, tenants: Iterable[str]) -> None:
    """Refuse a TIME before the first captured event: the backup would be empty."""
    if all(cut[t][p] <= start[t][p] for t in cut for p in cut[t]):
        raise ConfigError(
            f"--to {to.isoformat()} is before the first captured change of "
            f"{', '.join(tenants)}; expected a time after capture's initial snapshot"
        )
