"""Which change-topic partitions a run has read up to its cut (pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sluiceway.runs import Offsets


@dataclass
class RunProgress:
    """Tracks ``start <= offset < cut`` per partition; a partition is done at its cut."""

    start: Offsets
    cut: Offsets
    pending: set[tuple[str, int]] = field(default_factory=set)
    read: int = 0

    def __post_init__(self) -> None:
        self.pending = {
            (topic, p)
            for topic, parts in self.cut.items()
            for p, cut in parts.items()
            if cut > self.start.get(topic, {}).get(p, 0)
        }

    def in_range(self, topic: str, partition: int, offset: int) -> bool:
        start = self.start.get(topic, {}).get(partition, 0)
        return start <= offset < self.cut.get(topic, {}).get(partition, 0)

    def observe(self, topic: str, partition: int, offset: int) -> None:
        """Record that ``offset`` was processed; reaching cut - 1 completes the partition."""
        self.read += 1
        if offset >= self.cut.get(topic, {}).get(partition, 0) - 1:
            self.pending.discard((topic, partition))

    def observe_batch(self, topic: str, partition: int, count: int, last_offset: int) -> None:
        """Record ``count`` records processed up to ``last_offset`` (one fetched batch)."""
        self.read += count - 1
        self.observe(topic, partition, last_offset)

    @property
    def done(self) -> bool:
        return not self.pending
