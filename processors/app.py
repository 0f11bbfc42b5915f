"""The faust-streaming app of one export run.

Each run is its own consumer group (``sw-process-<etl_id>``), so a run reads the change
topics from the offsets it was given, and more workers of the same run share the work.
Run-topic partition p receives what change-topic partition p held: both use the same
tenant-affine partitioner, which is also what lets faust's exactly-once transactions
(one per source partition) cover the output.

A delta run's records arrive a fetched batch per partition at a time (processors/fetch.py);
each batch's outputs and its source offsets are committed together in that partition's
transaction. A full run reads its partitions itself, from the cut downwards, so that it
forwards each key's last version in one pass (processors/full_pass.py); each chunk's
outputs and how far down it got are committed together the same way.
Each partition ends on its own: when it reaches the cut, its end marker and the cut commit
in one transaction; the run is processed once the group has ended every partition
(processors/group_end.py). Workers join and leave freely (faust's assignor moves
partitions whole, with every change topic's partition p together); what a worker taking
over p needs is in the commits' metadata (processors/ownership.py). faust's client
rebalances eagerly: it has no cooperative protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import ProducerFenced
from faust.types import TP

from sluiceway.common.codec import Codec
from sluiceway.common.health import HEALTH
from sluiceway.common.read_path import uses_index
from sluiceway.common.runs import END_MARKER, MARKER_HEADER, RunRecord
from sluiceway.common.spec import RunSpec
from sluiceway.processors import metrics
from sluiceway.processors.chunks import ChunkReader, Records
from sluiceway.processors.config import ProcessorSettings
from sluiceway.processors.faust_app import build_app
from sluiceway.processors.full_pass import ForwardPass, FullPass, Reader
from sluiceway.processors.group_end import GroupEnd
from sluiceway.processors.indexed import IndexedReader
from sluiceway.processors.opt_out import OptedOut
from sluiceway.processors.outputs import Outputs, by_writer
from sluiceway.processors.ownership import GroupOffsets, PartitionState, state_from
from sluiceway.processors.progress import RunProgress
from sluiceway.processors.transactions import Transactions
from sluiceway.processors.transforms import select

log = logging.getLogger("sluiceway.processor")


@dataclass(frozen=True)
class Lookups:
    """What the passes before the worker found (processors/scan.py)."""

    full: bool  # a full run: each key's last version before the cut, read downwards
    opted: OptedOut  # runs with opt-outs: the verdicts on the cascade's judged rows


class RunProcessor:
    """The state one worker keeps for a run; the agent and timer below call into it."""

    def __init__(
        self, settings: ProcessorSettings, run: RunRecord, spec: RunSpec, codec: Codec,
        lookups: Lookups,
    ) -> None:  # fmt: skip
        self.settings, self.run, self.spec, self.codec = settings, run, spec, codec
        self.full, self.opted = lookups.full, lookups.opted
        self.indexed = uses_index(run.read_path)
        self.tenants = frozenset(run.tenants)
        self.progress = RunProgress(run.start, run.cut)
        self.forwarded = 0
        self.read_before_first_output: int | None = None
        self.first_event_at: float | None = None  # for the throughput the run reports
        self.first_event_cpu = 0.0  # process CPU time then: events per CPU-second
        self.finished_at: float | None = None
        self.finished = False
        self.parts: dict[int, PartitionState] = {}  # run partitions this worker owns
        self.locks: dict[int, asyncio.Lock] = {}
        self.revoked: set[int] = set()  # revoked, until the next assignment
        self.parked: dict[int, PartitionState] = {}  # their states, committed
        self.group = GroupOffsets(settings.kafka, f"sw-process-{run.etl_id}")
        self.app = self._build_app()
        self.group_end = GroupEnd(self.group, run, self.source_topics)
        self.outputs = Outputs(run, spec, codec, self.opted, self.full, self.txn, settings.kafka)
        self.full_pass = self._pass()

    def _pass(self) -> FullPass | None:
        """A full run reads its partitions itself, and so does a delta read through the
        tenant index; any other delta reads what faust's consumer fetches."""
        kafka, chunk, group = (
            self.settings.kafka,
            self.settings.tuning.full_chunk,
            f"sw-scan-{self.run.etl_id}",
        )
        if self.indexed:
            reader: Reader = IndexedReader(kafka, group, self.source_topics, self.run.tenants)
        elif self.full:
            reader = ChunkReader(kafka, group)
        else:
            return None
        kind = FullPass if self.full else ForwardPass
        return kind(self.run, self.source_topics, chunk, self, reader)

    def _build_app(self) -> faust.App:
        kafka = self.settings.kafka
        app = build_app(self.settings, self.run.etl_id, self.full or self.indexed)
        app.batch_handler = self.handle_batch
        app.reads_itself = self.full or self.indexed
        self.source_topics = [kafka.cdc_topic(e) for e in self.run.entities]
        self.source = app.topic(*self.source_topics, key_type=bytes, value_type=bytes)
        exactly_once = self.settings.tuning.guarantee == "exactly_once"
        self.txn = Transactions(app, self.source_topics, exactly_once)
        # The agent subscribes the worker to the change topics (and so joins the group);
        # the records themselves arrive in batches through handle_batch (processors/fetch.py).
        app.agent(self.source, name="forward")(self._agent)
        app.timer(0.5)(self._check_done)

        @app.on_partitions_revoked.connect
        async def revoked(_app: Any, /, *args: Any, signal: Any, **_: Any) -> None:
            await self.on_revoked(set(args[0]) if args else set())

        @app.on_partitions_assigned.connect
        async def assigned(_app: Any, /, *args: Any, signal: Any, **_: Any) -> None:
            await self.on_assigned(set(args[0]) if args else set())

        return app

    async def _agent(self, stream: Any) -> None:
        async for _event in stream:  # pragma: no cover - the batch path receives everything
            log.error("record reached the faust stream instead of the batch path")

    async def handle_batch(self, tp: TP, records: Sequence[Any]) -> None:
        """Transform one fetched batch of a partition inside that partition's transaction;
        its outputs and its source offsets become visible together when it commits."""
        async with self.lock(tp.partition):
            try:
                await self._handle_batch(tp, records)
            except ProducerFenced:
                await self._fenced(tp.partition)
        await self._check_done()  # the timer would find out up to half a second later

    async def _handle_batch(self, tp: TP, records: Sequence[Any]) -> None:
        started = time.monotonic()
        topic, partition = tp.topic, tp.partition
        state = await self.state_of(partition)
        if state is None or state.marked:
            return  # revoked meanwhile, or finished: nothing past the cut is forwarded
        handled = state.next.get(topic, 0)
        if records[0].offset < handled:  # fetched before a rebalance: handled and committed
            records = [r for r in records if r.offset >= handled]
            if not records:
                return
        self._observe(topic, len(records), started)
        wanted = [r for r in records if self._wanted(topic, partition, r.offset, r.key, r.value)]
        await self._forward(state, topic, partition, Records.of(wanted))
        last = records[-1].offset
        state.next[topic] = max(handled, min(last + 1, self._cut(topic, partition)))
        await self._handled(partition, state, started)

    async def forward_chunk(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, low: int | None,
    ) -> None:  # fmt: skip
        """A full run's chunk (processors/full_pass.py): its picks forwarded in the
        partition's transaction, and, unless it only rebuilt keys, ``low`` recorded."""
        started = time.monotonic()
        self._observe(topic, read, started)
        try:
            for group in by_writer(records):
                await self._forward(state, topic, partition, group)
            if low is not None:
                state.low[topic] = low
                await self._handled(partition, state, started)
        except ProducerFenced:
            await self._fenced(partition)

    async def forward_span(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, next_offset: int,
    ) -> None:  # fmt: skip
        """A delta's range read through the index (processors/full_pass.py ForwardPass): its
        run records forwarded and one past it committed in the partition's transaction."""
        started = time.monotonic()
        self._observe(topic, read, started)
        try:
            wanted = Records.of(
                r for r in records if self._wanted(topic, partition, r.offset, r.key, r.value)
            )
            for group in by_writer(wanted):
                await self._forward(state, topic, partition, group)
            state.next[topic] = max(state.next.get(topic, 0), next_offset)
            await self._handled(partition, state, started)
        except ProducerFenced:
            await self._fenced(partition)

    async def read_up(self, partition: int) -> None:
        await self._end_if_done(partition)
        await self._check_done()

    def holds(self, partition: int, state: PartitionState) -> bool:
        return partition not in self.revoked and self.parts.get(partition) is state

    def _observe(self, topic: str, read: int, started: float) -> None:
        if self.first_event_at is None:
            self.first_event_at, self.first_event_cpu = started, time.process_time()
        self.progress.observe_batch(read)
        metrics.READ.labels(topic).inc(read)

    async def _forward(
        self, state: PartitionState, topic: str, partition: int, wanted: Records
    ) -> None:
        """Transform wanted records and send their outputs in the partition's transaction."""
        sent = await self.outputs.send(state, topic, partition, wanted)
        if sent and self.read_before_first_output is None:
            self.read_before_first_output = self.progress.read
        self.forwarded += sent

    async def _handled(self, partition: int, state: PartitionState, started: float) -> None:
        state.uncommitted = True
        # A transaction spans batches for up to commit_interval_s: its commit is a few round
        # trips, and a partition's end commits it anyway.
        if started - state.committed_at >= self.settings.tuning.commit_interval_s:
            await self._commit(partition, state, end=False)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)

    def _wanted(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> bool:
        """Cheap checks on the record alone, so most unwanted events are never decoded."""
        if value is None:  # a tombstone after a delete: for compaction, not for exports
            return False
        if not self.progress.in_range(topic, partition, offset):
            return False
        return select(key, self.tenants)

    def _cut(self, topic: str, partition: int) -> int:
        return self.run.cut.get(topic, {}).get(partition, 0)

    def _owned(self) -> set[int]:
        consumer: Any = self.app.consumer
        return {tp.partition for tp in consumer.assignment() if tp.topic in self.source_topics}

    async def state_of(self, partition: int) -> PartitionState | None:
        """The worker's state of ``partition``; read from the group's commits on takeover."""
        if partition in self.revoked or partition not in self._owned():
            return None  # its state stays until the revoke commits it
        state = self.parts.get(partition)
        if state is None:
            tps = [(t, partition) for t in self.source_topics]
            loop = asyncio.get_running_loop()
            committed = await loop.run_in_executor(None, self.group.committed, tps)
            if partition in self.revoked or partition not in self._owned():
                return None  # revoked while we asked
            cuts = self._cuts(partition) if self.full else None
            state = self.parts.setdefault(
                partition, state_from(committed, self.source_topics, time.monotonic(), cuts)
            )

        return state

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Commit what was handled of each revoked partition, then forget it: the next owner
        starts from that commit. Until the new assignment arrives, batches of these
        partitions fetched before are dropped: sending them could race their next owner."""
        partitions = sorted({tp.partition for tp in revoked})
        self.revoked.update(partitions)
        for partition in partitions:
            async with self.lock(partition):
                state = self.parts.pop(partition, None)
                if state is None:
                    continue
                if state.uncommitted and not state.marked:
                    try:
                        await self._commit(partition, state, end=False)
                    except ProducerFenced:
                        await self._fenced(partition)
                        continue
                self.parked[partition] = state

    async def on_assigned(self, assigned: set[TP]) -> None:
        """A partition this worker keeps continues from its parked state (exactly what it
        committed at the revoke); any other starts from the group's commits when first seen.
        Transaction producers of partitions not assigned any more are dropped (see
        processors/transactions.py)."""
        mine = {tp.partition for tp in assigned if tp.topic in self.source_topics}
        await self.txn.drop_all_but(mine)
        kept = {tp.partition for tp in assigned} & set(self.parked)
        for partition in kept:
            self.parts[partition] = self.parked[partition]
        self.parked.clear()
        self.revoked.clear()  # the consumer's assignment is the truth again
        if self.full_pass is not None:
            self.full_pass.drive(sorted(mine))

    async def _fenced(self, partition: int) -> None:
        """A newer owner's producer fenced ours: its partition is not ours any more. The
        fenced producer goes too, so that faust starts a fresh one if the group gives the
        partition back."""
        log.warning("partition %d moved to another worker mid-batch; leaving it", partition)
        self.parts.pop(partition, None)
        self.revoked.add(partition)
        await self.txn.drop(partition)

    def lock(self, partition: int) -> asyncio.Lock:
        """Held while a batch of ``partition`` is handled, so a commit never splits one."""
        return self.locks.setdefault(partition, asyncio.Lock())

    async def _commit(self, partition: int, state: PartitionState, *, end: bool) -> None:
        """Commit ``partition``'s transaction with every change topic's next offset, its
        dead-letter count and, with its end marker, ``end`` (processors/ownership.py)."""
        state.committed_at = time.monotonic()
        await self.txn.commit(partition, state.next, state.notes(end))
        state.uncommitted = False

    async def _check_done(self) -> None:
        """End every owned partition that reached its cut; stop once the group has ended all."""
        HEALTH.beat()  # the half-second timer runs: the worker's event loop is not stuck
        if self.finished:
            return
        owned = self._owned()
        metrics.PENDING_PARTITIONS.set(
            sum(1 for p in owned if not (s := self.parts.get(p)) or not s.marked)
        )
        if self.full_pass is not None:
            self.full_pass.drive(sorted(owned))
        for partition in sorted(owned):
            await self._end_if_done(partition)
        ended = {p for p, s in self.parts.items() if s.marked}
        if not owned <= ended:
            return
        # done: this worker ended every partition itself, or the group ended the others
        done = len(ended) == self.run.run_partitions
        if done or await self.group_end.all_ended(ended, self.revoked):
            self._finish()

    async def _end_if_done(self, partition: int) -> None:
        """End ``partition`` if it reached its cut and is still this worker's."""
        state = await self.state_of(partition)
        if state is not None and not state.marked and state.done(self._cuts(partition)):
            async with self.lock(partition):
                if self.parts.get(partition) is state and not state.marked:
                    try:
                        await self._end_partition(partition, state)
                    except ProducerFenced:
                        await self._fenced(partition)

    def _cuts(self, partition: int) -> dict[str, int]:
        return {t: self._cut(t, partition) for t in self.source_topics}

    async def _end_partition(self, partition: int, state: PartitionState) -> None:
        """Send ``partition``'s end marker and commit it with the cut, in one transaction.

        The marker carries the partition's dead-letter count to the sink's manifest."""
        fields = {
            "etl_id": self.run.etl_id, "partition": partition, "dead_letters": state.dead_letters
        }  # fmt: skip
        marker = json.dumps(fields).encode()
        await self.txn.send(
            self.run.run_topic, partition, None, marker, [(MARKER_HEADER, END_MARKER)], partition
        )
        state.next = self._cuts(partition)
        await self._commit(partition, state, end=True)
        state.marked = True
        self.group_end.ask_soon()
        log.info("run %s partition %d ended", self.run.etl_id, partition)

    def _finish(self) -> None:
        if self.finished:  # the timer and a pass that just read up can both get here
            return
        self.finished = True
        self.finished_at = time.monotonic()
        log.info(
            "run %s processed: read=%s forwarded=%s dead_lettered=%s",
            self.run.etl_id, self.progress.read, self.forwarded, self.dead_lettered,
        )  # fmt: skip
        self.group.close()
        self.on_finished()

    def on_finished(self) -> None:
        """Replaced by main() with what stops the worker hosting this app."""

    @property
    def dead_lettered(self) -> int:
        return self.outputs.dead_lettered

    def close(self) -> None:
        """Stop a full run's reading (the worker has stopped)."""
        if self.full_pass is not None:
            self.full_pass.close()
