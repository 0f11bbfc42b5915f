"""Sending and committing inside faust's per-partition transactions (``exactly_once``).

faust's ``Topic.send`` bypasses the transactions even under exactly_once, and sends one
record per call (a lock, a future and a task each). A run's worker sends through the
aiokafka producer of the source partition's transaction instead, whole batches at a time,
under faust's own lock for that transaction so a commit never interleaves.

faust drops a transaction's producer when the partition moves to another worker or when a
newer producer fenced it, and then its send and commit of that id only log a warning and do
nothing. Here a missing producer raises ProducerFenced instead: the worker must stop
counting the partition as its own (processors/app.py), or it would take a batch whose
outputs were never sent, or a commit that never happened, as done, and a later commit of
the same partition from that state would skip those events for good.

faust does not always stop the producer of a partition that moved away (seen in the
scale-out test: a worker lost partition 0 in one rebalance, its next owner started a
producer with a newer epoch, and when partition 0 came back faust handed the old, fenced
producer to the worker again; its first batch was fenced and the partition sat idle until
the next rebalance). So after every assignment the worker drops the producers of the
partitions it no longer has, and faust starts a fresh one if a partition comes back.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import faust
from aiokafka.errors import ProducerFenced
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.types import TP

Outputs = list[tuple[bytes | None, bytes | None]]


class Transactions:
    """The transactions of one run's worker: one per change-topic partition number."""

    def __init__(self, app: faust.App, source_topics: list[str], exactly_once: bool) -> None:
        self.app, self.source_topics, self.exactly_once = app, source_topics, exactly_once

    def transactional_id(self, partition: int) -> str | None:
        """The id faust's TransactionManager gives source partition ``partition``'s
        transaction (every change topic's partition p is in one topic group)."""
        if not self.exactly_once:
            return None
        group = self.app.assignor.group_for_topic(self.source_topics[0])
        return f"{self.app.conf.id}-{group}-{partition}"

    async def send(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
        headers: Any, transaction: int,
    ) -> None:  # fmt: skip
        """One record, inside source partition ``transaction``'s transaction."""
        producer: Any = self.app.producer
        tid = self.transactional_id(transaction)
        if tid is None:
            await producer.send(topic, key, value, partition, None, headers)
            return
        self._producer_of(tid)
        await producer.send(topic, key, value, partition, None, headers, transactional_id=tid)

    async def send_many(self, topic: str, partition: int, outs: Outputs) -> None:
        """A batch's outputs to ``topic`` partition ``partition``, in as few producer
        batches as fit, inside source partition ``partition``'s transaction."""
        if not outs:
            return
        producer: Any = self.app.producer
        tid = self.transactional_id(partition)
        if tid is None:
            for key, value in outs:
                await producer.send(topic, key, value, partition, None, None)
            return
        aio = self._producer_of(tid)
        pending = []
        async with producer._trn_locks[tid]:
            batch = aio.create_batch()
            for key, value in outs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await aio.send_batch(batch, topic, partition=partition))
                    batch = aio.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await aio.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)

    async def commit(self, partition: int, offsets: dict[str, int], notes: dict[str, str]) -> None:
        """Commit ``partition``'s transaction with these change-topic offsets, each carrying
        its topic's note as its metadata (without exactly_once: flush, then a plain commit)."""
        if not self.exactly_once:
            await self.app.producer.flush()
            consumer: Any = self.app.consumer
            await consumer._commit({TP(t, partition): o for t, o in offsets.items()})
            return
        tid = self.transactional_id(partition) or ""
        marked = {
            TopicPartition(t, partition): OffsetAndMetadata(o, notes[t]) for t, o in offsets.items()
        }
        self._producer_of(tid)  # faust creates a transaction's lock with its producer
        producer: Any = self.app.producer
        async with producer._trn_locks[tid]:  # what faust's commit_transactions does, but loud
            aio = self._producer_of(tid)
            await aio.send_offsets_to_transaction(marked, self.app.conf.id)
            await aio.commit_transaction()
            await aio.begin_transaction()

    async def drop(self, partition: int) -> None:
        """Stop ``partition``'s transaction producer (fenced: it can never commit again)."""
        tid = self.transactional_id(partition)
        if tid is not None:
            producer: Any = self.app.producer
            await producer.stop_transaction(tid)

    async def drop_all_but(self, partitions: set[int]) -> None:
        """Stop the transaction producers of every other partition of the run's topics."""
        if not self.exactly_once:
            return
        producer: Any = self.app.producer
        group = self.app.assignor.group_for_topic(self.source_topics[0])
        ours = re.compile(rf"{re.escape(self.app.conf.id)}-{group}-\d+")
        wanted = {self.transactional_id(p) for p in partitions}
        for tid in list(producer._transaction_producers):
            if ours.fullmatch(tid) and tid not in wanted:
                await producer.stop_transaction(tid)

    def _producer_of(self, tid: str) -> Any:
        """The aiokafka producer of transaction ``tid``; ProducerFenced if faust has none."""
        producer: Any = self.app.producer
        aio = producer._transaction_producers.get(tid)
        if aio is None:
            raise ProducerFenced(f"transaction {tid} has no producer here any more")
        return aio
