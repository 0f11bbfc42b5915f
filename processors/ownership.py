"""What a processor worker knows of the run partitions it owns, and what the group committed.

Several workers share a run through its consumer group. Run-topic partition p is fed by
partition p of every change topic (one transaction per p), so p belongs to one worker at a
time and moves whole on a rebalance. A worker never has to ask another what it did: every
commit of p's source offsets carries, as Kafka offset metadata, p's running dead-letter
count, whether p's end marker went out in that transaction and, in a full run, how far
down from the cut the topic's partition has been read (``low``: a full run reads each
partition from the cut downwards, processors/latest.py). A worker that takes p over
continues from there; the run is done when every partition's commit says ``end``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from sluiceway.common import kafka_io
from sluiceway.common.errors import TransientError
from sluiceway.common.kafka_io import metadata_of
from sluiceway.common.settings import KafkaSettings

END = "end"
DEAD = "dead_letters"
LOW = "low"


@dataclass(frozen=True)
class Committed:
    """One source partition's committed offset and what its metadata says."""

    offset: int
    dead_letters: int = 0
    end: bool = False
    low: int | None = None  # a full run: [low, cut) of this topic's partition is done


def metadata(dead_letters: int, end: bool, low: int | None = None) -> str:
    fields: dict[str, int | bool] = {DEAD: dead_letters, END: end}
    if low is not None:
        fields[LOW] = low
    # The trailing NUL matters: confluent-kafka reads metadata committed by other clients
    # as a C string, past its end (random bytes after the JSON, or a UnicodeDecodeError).
    return json.dumps(fields, separators=(",", ":")) + "\0"


def parse_metadata(offset: int, text: str | None) -> Committed:
    """Metadata of a commit; anything not ours (the run's start offsets have none) is empty."""
    try:
        fields, _ = json.JSONDecoder().raw_decode((text or "{}").split("\0", 1)[0])
        low = fields.get(LOW)
        return Committed(
            offset,
            int(fields.get(DEAD, 0)),
            bool(fields.get(END, False)),
            int(low) if low is not None else None,
        )
    except (ValueError, TypeError, AttributeError):
        return Committed(offset)


@dataclass
class PartitionState:
    """Run partition p as its current owner sees it.

    ``next`` holds, per change topic, the next offset to handle: the committed offset when
    the worker took p over, then one past each handled batch. p is done when every topic's
    ``next`` reaches the cut; records at or past the cut are never forwarded.

    A full run reads downwards instead: ``next`` stays at the run's start until the end
    marker, and ``low`` holds, per topic, the lowest offset read so far (the cut before the
    first chunk). p is done when every topic's ``low`` reaches ``next``.
    """

    next: dict[str, int]
    dead_letters: int
    marked: bool
    uncommitted: bool = False
    committed_at: float = 0.0
    low: dict[str, int] = field(default_factory=dict)  # full runs only

    def done(self, cut: dict[str, int]) -> bool:
        if self.low:
            return all(self.low[topic] <= self.next.get(topic, 0) for topic in cut)
        return all(self.next.get(topic, 0) >= offset for topic, offset in cut.items())

    def notes(self, end: bool) -> dict[str, str]:
        """The commit metadata of each topic's partition (see ``metadata``)."""
        return {
            topic: metadata(self.dead_letters, end, None if end else self.low.get(topic))
            for topic in self.next
        }


def state_from(
    committed: list[Committed], topics: list[str], now: float, cut: dict[str, int] | None = None
) -> PartitionState:
    """The state of a partition just taken over, from its topics' commits (same order);
    ``cut`` for a full run, whose topics are read from the cut downwards."""
    state = PartitionState(
        next={t: c.offset for t, c in zip(topics, committed, strict=True)},
        dead_letters=max((c.dead_letters for c in committed), default=0),
        marked=bool(committed) and all(c.end for c in committed),
        committed_at=now,
    )
    if cut is not None:
        state.low = {
            t: cut[t] if c.low is None else c.low for t, c in zip(topics, committed, strict=True)
        }
    return state


class GroupOffsets:
    """Reads a group's committed offsets with their metadata, without joining the group."""

    def __init__(self, kafka: KafkaSettings, group: str) -> None:
        self.consumer: Consumer = kafka_io.consumer(kafka, group)

    def committed(self, tps: list[tuple[str, int]], timeout: float = 10.0) -> list[Committed]:
        try:
            found = self.consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=timeout)
        except Exception as exc:  # KafkaException and timeouts: the caller retries
            raise TransientError(f"cannot read committed offsets of {tps}: {exc}") from exc
        return [parse_metadata(max(tp.offset, 0), metadata_of(tp)) for tp in found]

    def close(self) -> None:
        self.consumer.close()
