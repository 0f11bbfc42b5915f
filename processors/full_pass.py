"""How a worker reads the partitions it owns in a full run: from the cut downwards.

One task per owned run partition p walks every change topic's partition p in chunks
(processors/chunks.py), from the cut down to the run's start, and hands each chunk's picks
(processors/latest.py) to the worker, which forwards them in p's transaction and commits
how far down it got (processors/ownership.py). While a chunk is forwarded the next one is
already being read. All reads go through one consumer on one thread.

A task whose partition moved away stops at its next chunk. The keys a picker holds for p
belong to one PartitionState: a worker that keeps p across a rebalance keeps its state and
its keys, while one that (re)takes p from the group's commits rebuilds the keys of
``[low, cut)`` first (read again, nothing forwarded).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from sluiceway.common.runs import RunRecord
from sluiceway.processors.chunks import Chunk, Records
from sluiceway.processors.errors import ScanStoppedError
from sluiceway.processors.latest import Picker
from sluiceway.processors.ownership import PartitionState

log = logging.getLogger("sluiceway.processor")


class Host(Protocol):
    """What the worker (processors/app.py) does for the pass."""

    async def state_of(self, partition: int) -> PartitionState | None: ...

    def holds(self, partition: int, state: PartitionState) -> bool: ...

    def lock(self, partition: int) -> AbstractAsyncContextManager[object]: ...

    async def forward_chunk(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, low: int | None,
    ) -> None: ...  # fmt: skip

    async def forward_span(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, next_offset: int,
    ) -> None: ...  # fmt: skip

    async def read_up(self, partition: int) -> None:
        """Every range of the partition is handed over: end it now, not at the next tick."""


class Reader(Protocol):
    """processors/chunks.py's ChunkReader, or processors/indexed.py's IndexedReader."""

    def read(
        self, topic: str, partition: int, lo: int, hi: int, stopped: Callable[[], bool]
    ) -> Chunk: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Step:
    """One range to read: ``rebuild`` ranges only refill the keys met (a takeover)."""

    topic: str
    lo: int
    hi: int
    rebuild: bool


def steps(
    state: PartitionState, cuts: dict[str, int], topics: Sequence[str], chunk: int,
    rebuild: bool,
) -> Iterator[Step]:  # fmt: skip
    """The ranges a task reads for a partition in this state, in order: per topic, with
    ``rebuild`` the part already done (``[low, cut)``, to rebuild its keys), then chunks
    from ``low`` down to the run's start, the newest first."""
    for topic in topics:
        start, low, cut = state.next[topic], state.low[topic], cuts[topic]
        for lo in range(low, cut if rebuild else low, chunk):
            yield Step(topic, lo, min(lo + chunk, cut), True)
        while low > start:
            yield Step(topic, max(start, low - chunk), low, False)
            low = max(start, low - chunk)


def _report(partition: int, task: asyncio.Task[None]) -> None:
    """A task that failed (Kafka unreachable past the read timeout) is said, then started
    again by the worker's next check from the partition's state, which it left as it was."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("reading partition %d failed; starting it again: %s", partition, exc)


class FullPass:
    """The downward reading of one worker's partitions of a full run."""

    def __init__(
        self, run: RunRecord, topics: Sequence[str], chunk: int, host: Host, reader: Reader
    ) -> None:
        self.run, self.topics, self.chunk, self.host = run, list(topics), chunk, host
        self.picker = Picker(run.tenants)
        self.reader = reader
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="sw-chunks")
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.keys_of: dict[int, PartitionState] = {}  # whose keys the picker holds, per p
        self.stopping = False

    def drive(self, partitions: Sequence[int]) -> None:
        """Start a task for each of these partitions that has none running."""
        for partition in partitions:
            task = self.tasks.get(partition)
            if (task is None or task.done()) and not self.stopping:
                task = self.tasks[partition] = asyncio.ensure_future(self._drive(partition))
                task.add_done_callback(functools.partial(_report, partition))

    async def _drive(self, partition: int) -> None:
        state = await self.host.state_of(partition)
        cuts = {t: self.run.cut.get(t, {}).get(partition, 0) for t in self.topics}
        if state is None or state.marked or state.done(cuts):
            return
        todo = self._steps(partition, state, cuts)
        try:
            await self._walk(partition, state, todo)
        except ScanStoppedError:
            self._forget(partition)  # the worker stops; what was forwarded is committed
        except Exception:
            # the keys of a chunk whose outputs may not have gone out: the next task must
            # rebuild from what was committed, or it would take them as forwarded
            self._forget(partition)
            if self.host.holds(partition, state):
                raise
            # a rebalance or the worker's stop took the partition and closed its producer
            # mid-chunk: nothing failed, its next owner goes on from the commits
            log.info("partition %d moved away while a chunk was sent; left to it", partition)
        except BaseException:  # cancelled: as above
            self._forget(partition)
            raise

    def _steps(self, partition: int, state: PartitionState, cuts: dict[str, int]) -> Iterator[Step]:
        rebuild = self.keys_of.get(partition) is not state
        if rebuild:  # the keys held, if any, are of an older state of the partition
            self._forget(partition)
            self.keys_of[partition] = state
        return steps(state, cuts, self.topics, self.chunk, rebuild)

    async def _walk(self, partition: int, state: PartitionState, todo: Iterator[Step]) -> None:
        step = next(todo, None)
        pending = self._read(partition, step) if step is not None else None
        while step is not None and pending is not None:
            chunk = await pending
            after = next(todo, None)
            pending = self._read(partition, after) if after is not None else None
            async with self.host.lock(partition):
                if not self.host.holds(partition, state):
                    self._forget(partition)  # moved away: its next owner starts over
                    return
                await self._hand(partition, state, step, chunk)
            step = after
        self._forget(partition)  # done: the partition ends (app.py), its keys are not needed
        await self.host.read_up(partition)

    async def _hand(self, partition: int, state: PartitionState, step: Step, chunk: Chunk) -> None:
        picked = self.picker.pick((step.topic, partition), chunk.keys, chunk.values)
        records = chunk.records([] if step.rebuild else picked)
        low = None if step.rebuild else step.lo
        await self.host.forward_chunk(state, step.topic, partition, records, chunk.consumed, low)

    def _read(self, partition: int, step: Step) -> Awaitable[Chunk]:
        loop = asyncio.get_running_loop()
        stopped: Callable[[], bool] = lambda: self.stopping  # noqa: E731
        return loop.run_in_executor(
            self.thread, self.reader.read, step.topic, partition, step.lo, step.hi, stopped
        )

    def _forget(self, partition: int) -> None:
        self.keys_of.pop(partition, None)
        for topic in self.topics:
            self.picker.forget((topic, partition))

    def close(self) -> None:
        """Stop reading and close the reader, once the worker's loop has stopped: a read in
        progress ends within half a second."""
        self.stopping = True
        self.thread.shutdown(wait=True)
        self.reader.close()


class ForwardPass(FullPass):
    """A delta run read through the tenant index (processors/indexed.py): each partition
    from its committed offsets up to the cut, a chunk at a time, every record handed to the
    worker, which forwards the run's and commits one past the chunk. Nothing to rebuild on
    a takeover: the commits say where to go on."""

    def _steps(self, partition: int, state: PartitionState, cuts: dict[str, int]) -> Iterator[Step]:
        for topic in self.topics:
            lo, cut = state.next.get(topic, 0), cuts[topic]
            for at in range(lo, cut, self.chunk):
                yield Step(topic, at, min(at + self.chunk, cut), False)

    async def _hand(self, partition: int, state: PartitionState, step: Step, chunk: Chunk) -> None:
        records = chunk.records()
        await self.host.forward_span(state, step.topic, partition, records, chunk.consumed, step.hi)
