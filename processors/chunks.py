"""Reading one offset range of one change-topic partition: the chunks of a full run.

A full run reads each partition from the cut down to its start, a chunk at a time
(processors/latest.py). Each chunk is a plain forward read of ``[lo, hi)`` by a consumer
that is assigned that partition alone and never commits: the run's progress is what its
worker commits in the run's transactions (processors/ownership.py).

The consumer's prefetch queue is kept small, because whatever it fetched past ``hi`` is
thrown away when the next chunk (lower down) is assigned; its fetches are large (8 MiB),
because each is a round trip to the broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, TopicPartition

from sluiceway.common.kafka_io import consumer
from sluiceway.common.settings import KafkaSettings
from sluiceway.processors.errors import ScanStoppedError, ScanTimeoutError

# fetched past a chunk's end and dropped: at most about a fetch and the queue per chunk
FETCH_BYTES = 8 * 1024 * 1024  # librdkafka's 1 MiB fetches read a chunk three times slower
PREFETCH_KBYTES = 8192


class Rec(NamedTuple):
    """One change record, as the run's transform and dead-letter paths read it (a tuple:
    one is made per record forwarded, and a frozen dataclass costs three times as much)."""

    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Records:
    """Records of one partition in offset order, as three parallel lists: the batch path
    reads the keys and values as lists, so a record tuple is only made for the per-event
    path (making one per record forwarded was a seventh of a full run's processor time)."""

    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]

    @classmethod
    def of(cls, records: Iterable[Any]) -> Records:
        """Records of anything with ``offset``, ``key`` and ``value`` (a fetched batch)."""
        listed = list(records)
        return cls([r.offset for r in listed], [r.key for r in listed], [r.value for r in listed])

    def take(self, at: Sequence[int]) -> Records:
        """The records at these indexes, in their order."""
        offsets, keys, values = self.offsets, self.keys, self.values
        return Records([offsets[i] for i in at], [keys[i] for i in at], [values[i] for i in at])

    def slice(self, lo: int, hi: int) -> Records:
        """The records from index ``lo`` up to ``hi``; the same object when that is all."""
        if lo == 0 and hi >= len(self.offsets):
            return self
        return Records(self.offsets[lo:hi], self.keys[lo:hi], self.values[lo:hi])

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Rec]:
        return map(Rec, self.offsets, self.keys, self.values)


@dataclass
class Chunk:
    """The records of ``[lo, hi)`` in offset order, in three parallel lists; ``consumed``
    counts every record the consumer handed over, those it read past ``hi`` included."""

    lo: int
    hi: int
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    consumed: int = 0

    def records(self, picked: Sequence[int] | None = None) -> Records:
        """The records at the indexes ``picked``; all of them without."""
        whole = Records(self.offsets, self.keys, self.values)
        return whole if picked is None else whole.take(picked)


class ChunkReader:
    """One consumer that reads ranges of any change-topic partition, one range at a time.

    Not thread-safe: a worker keeps one and calls it from one executor thread."""

    def __init__(
        self, kafka: KafkaSettings, group: str, timeout_s: float = 600,
        fetch_bytes: int = FETCH_BYTES, prefetch_kbytes: int = PREFETCH_KBYTES,
    ) -> None:  # fmt: skip
        self.timeout_s = timeout_s
        self.known: set[str] = set()  # topics whose metadata the client holds
        self.consumer = consumer(
            kafka,
            group,
            **{
                "enable.partition.eof": True,
                "queued.max.messages.kbytes": prefetch_kbytes,
                "max.partition.fetch.bytes": fetch_bytes,
                # a fetch in flight waits this long for data before the consumer can move to
                # the next chunk: librdkafka's 500 ms default made each chunk cost half a second
                "fetch.wait.max.ms": 10,
            },
        )

    def read(
        self, topic: str, partition: int, lo: int, hi: int, stopped: Callable[[], bool]
    ) -> Chunk:
        """Every record of ``[lo, hi)``; a range that compaction emptied comes back empty.
        ScanStoppedError as soon as ``stopped()`` says so (asked every 50 ms)."""
        chunk = Chunk(lo, hi, [], [], [])
        if hi <= lo:
            return chunk
        if topic not in self.known:
            # librdkafka learns a newly assigned topic's metadata on its next sparse refresh,
            # about a second later; asked for now, it answers in one round trip
            self.consumer.list_topics(topic, timeout=10)
            self.known.add(topic)
        self.consumer.assign([TopicPartition(topic, partition, lo)])
        deadline = time.monotonic() + self.timeout_s
        next_offset = lo
        while True:
            if stopped():
                raise ScanStoppedError(f"{topic}[{partition}]")
            if time.monotonic() > deadline:
                raise ScanTimeoutError(
                    f"could not read {topic}[{partition}] {lo}..{hi} in {self.timeout_s:.0f}s"
                )
            # never more records than offsets are left: the records past hi stay unread. A
            # short wait: consume() waits for all of them, and transaction markers take
            # offsets that no record fills (the top chunk then ends on end-of-partition)
            batch = self.consumer.consume(max(1, min(10_000, hi - next_offset)), 0.05)
            chunk.consumed += len(batch)
            for msg in batch:
                err = msg.error()
                if err is not None:
                    # end of the partition before hi: compaction removed the range's tail
                    if err.code() == KafkaError._PARTITION_EOF:
                        return chunk
                    continue
                offset = msg.offset() or 0
                next_offset = offset + 1
                if lo <= offset < hi:
                    chunk.offsets.append(offset)
                    chunk.keys.append(msg.key())
                    chunk.values.append(msg.value())
                if offset >= hi - 1:
                    return chunk

    def close(self) -> None:
        self.consumer.close()
