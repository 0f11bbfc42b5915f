"""Which Kafka offsets may be committed, and whether the run is complete. Pure.

An offset is committed only once every row before it sits in a published file. The end
marker of a partition is committed past only after the manifest is written, so a sink
that dies between its last file and its manifest sees the markers again on restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OffsetTracker:
    partitions: int
    consumed: dict[int, int] = field(default_factory=dict)  # last offset read
    markers: dict[int, int] = field(default_factory=dict)  # offset of the end marker
    manifest_written: bool = False

    def saw(self, partition: int, offset: int) -> None:
        self.consumed[partition] = max(offset, self.consumed.get(partition, -1))

    def saw_end(self, partition: int, offset: int) -> None:
        self.saw(partition, offset)
        self.markers[partition] = offset

    @property
    def complete(self) -> bool:
        return all(p in self.markers for p in range(self.partitions))

    def missing(self) -> list[int]:
        return [p for p in range(self.partitions) if p not in self.markers]

    def committable(self, open_starts: dict[int, int]) -> dict[int, int]:
        """Next offset to commit per partition read so far.

        ``open_starts`` is the smallest first offset of the partition's open files.
        """
        out: dict[int, int] = {}
        for partition, last in self.consumed.items():
            offset = open_starts.get(partition, last + 1)
            marker = self.markers.get(partition)
            if marker is not None and not self.manifest_written:
                offset = min(offset, marker)
            out[partition] = offset
        return out
