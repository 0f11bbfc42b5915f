"""What a run's worker reads: the offset range of each change-topic partition (pure).

When a partition is done is the partition's own state (processors/ownership.py): it
continues across workers, which this per-worker count does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluiceway.common.runs import Offsets


@dataclass
class RunProgress:
    """A run reads ``start <= offset < cut`` per partition; counts what this worker read."""

    start: Offsets
    cut: Offsets
    read: int = 0

    def in_range(self, topic: str, partition: int, offset: int) -> bool:
        start = self.start.get(topic, {}).get(partition, 0)
        return start <= offset < self.cut.get(topic, {}).get(partition, 0)

    def observe_batch(self, count: int) -> None:
        """Record the ``count`` records of one fetched batch."""
        self.read += count
