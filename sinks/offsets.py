"""Which Kafka offsets may be committed, and what each commit says. Pure.

An offset is committed only once every row before it sits in a published file. Several
sinks share a run's topic through its consumer group, so what a sink taking a partition
over must know travels with the partition's commits, as offset metadata: the partition's
running dead-letter counts and, once its end marker's files are published, ``end``. The
run is complete when every partition's commit says ``end``, whichever sink made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

END, DEAD, UPSTREAM = "end", "dead_letters", "upstream_dead_letters"


@dataclass(frozen=True)
class PartitionCommit:
    """A partition's committed offset and its metadata."""

    offset: int
    dead_letters: int = 0  # events this stage dead-lettered, before ``offset``
    upstream: int = 0  # what the processor dead-lettered, from the end marker
    end: bool = False

    def metadata(self) -> str:
        fields = {DEAD: self.dead_letters, UPSTREAM: self.upstream, END: self.end}
        return json.dumps(fields, separators=(",", ":"))


def parse_commit(offset: int, text: str | None) -> PartitionCommit:
    """What a commit says; a commit that is not ours (or none at all) says nothing yet."""
    try:
        fields, _ = json.JSONDecoder().raw_decode((text or "{}").split("\0", 1)[0])
        return PartitionCommit(
            max(offset, 0),
            int(fields.get(DEAD, 0)),
            int(fields.get(UPSTREAM, 0)),
            bool(fields.get(END, False)),
        )
    except (ValueError, TypeError, AttributeError):
        return PartitionCommit(max(offset, 0))


@dataclass
class OffsetTracker:
    partitions: int
    consumed: dict[int, int] = field(default_factory=dict)  # last offset read
    markers: dict[int, int] = field(default_factory=dict)  # offset of the end marker seen
    ended: set[int] = field(default_factory=set)  # partitions whose commit says end
    dead: dict[int, int] = field(default_factory=dict)  # dead letters before the commit
    dead_after: dict[int, list[int]] = field(default_factory=dict)  # their offsets, after it
    upstream: dict[int, int] = field(default_factory=dict)

    def take_over(self, partition: int, commit: PartitionCommit) -> None:
        """Continue ``partition`` from its last commit (this sink was just assigned it)."""
        self.forget(partition)
        self.dead[partition] = commit.dead_letters
        self.upstream[partition] = commit.upstream
        if commit.end:
            self.ended.add(partition)
            self.markers[partition] = commit.offset - 1

    def forget(self, partition: int) -> None:
        """``partition`` went to another sink: its commits are the truth from now on."""
        for table in (self.consumed, self.markers, self.dead, self.dead_after, self.upstream):
            table.pop(partition, None)
        self.ended.discard(partition)

    def saw(self, partition: int, offset: int) -> None:
        self.consumed[partition] = max(offset, self.consumed.get(partition, -1))

    def saw_end(self, partition: int, offset: int, upstream: int) -> bool:
        """An end marker; True for the partition's first (a processor that took a partition
        over may send another, which ends nothing new)."""
        self.saw(partition, offset)
        if partition in self.markers:
            return False
        self.markers[partition] = offset
        self.upstream[partition] = upstream
        return True

    def dead_lettered(self, partition: int, offset: int) -> None:
        """Counted once committed past: a sink that dies before reads and counts it again."""
        self.dead_after.setdefault(partition, []).append(offset)

    def _dead_before(self, partition: int, offset: int) -> int:
        later = self.dead_after.get(partition, [])
        return self.dead.get(partition, 0) + sum(1 for o in later if o < offset)

    def committable(self, open_starts: dict[int, int]) -> dict[int, PartitionCommit]:
        """What to commit per partition read so far.

        ``open_starts`` is the smallest first offset of the partition's open files; a
        partition's files are all published when its end marker is handled.
        """
        out: dict[int, PartitionCommit] = {}
        for partition, last in self.consumed.items():
            ended = partition in self.markers
            offset = last + 1 if ended else open_starts.get(partition, last + 1)
            out[partition] = PartitionCommit(
                offset, self._dead_before(partition, offset), self.upstream.get(partition, 0), ended
            )
        return out

    def committed(self, commits: dict[int, PartitionCommit]) -> None:
        """These commits are durable: ended partitions are now ended for every sink."""
        for partition, commit in commits.items():
            self.dead[partition] = commit.dead_letters
            later = self.dead_after.get(partition, [])
            self.dead_after[partition] = [o for o in later if o >= commit.offset]
            if commit.end:
                self.ended.add(partition)
