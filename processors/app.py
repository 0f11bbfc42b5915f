"""The faust-streaming app of one export run.

Each run is its own consumer group (``sw-process-<etl_id>``), so a run reads the change
topics from the offsets it was given, and more workers of the same run share the work.
Run-topic partition p receives what change-topic partition p held: both use the same
tenant-affine partitioner, which is also what lets faust's exactly-once transactions
(one per source partition) cover the output.

Records arrive a fetched batch per partition at a time (processors/fetch.py); each batch's
outputs and its source offsets are committed together in that partition's transaction.
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
from aiokafka.structs import TopicPartition
from faust.types import TP

from processors import fetch, metrics
from processors.config import ProcessorSettings
from processors.progress import RunProgress
from processors.run_schema import run_event_schemas
from processors.scan import Latest
from processors.spec import RunSpec
from processors.transforms import IssueProject, output_key, select, transform, validate
from sluiceway.codec import Codec
from sluiceway.errors import InvalidEventError
from sluiceway.health import HEALTH
from sluiceway.runs import END_MARKER, MARKER_HEADER, RunRecord

log = logging.getLogger("sluiceway.processor")


@dataclass(frozen=True)
class Lookups:
    """What the passes before the worker found (processors/scan.py)."""

    latest: Latest | None  # full runs: each key's last offset; None for deltas
    issue_project: IssueProject


class RunProcessor:
    """The state one worker keeps for a run; the agent and timer below call into it."""

    def __init__(
        self, settings: ProcessorSettings, run: RunRecord, spec: RunSpec, codec: Codec,
        lookups: Lookups,
    ) -> None:  # fmt: skip
        self.settings, self.run, self.spec, self.codec = settings, run, spec, codec
        self.latest, self.issue_project = lookups.latest, lookups.issue_project
        self.run_schemas = run_event_schemas(spec, codec)
        self.tenants = frozenset(run.tenants)
        self.entities = frozenset(run.entities)
        self.progress = RunProgress(run.start, run.cut)
        self.forwarded = 0
        self.first_event_at: float | None = None  # for the throughput the run reports
        self.finished_at: float | None = None
        self.dead_lettered = 0
        self.finished = False
        self.committed_at: dict[TP, float] = {}  # last transaction commit per partition
        self.app = self._build_app()

    def _build_app(self) -> faust.App:
        kafka, tuning = self.settings.kafka, self.settings.tuning
        fetch.register()
        app = fetch.BatchApp(
            f"sw-process-{self.run.etl_id}",
            broker=f"{fetch.SCHEME}://{kafka.servers}",
            processing_guarantee=tuning.guarantee,
            broker_commit_interval=tuning.commit_interval_s,
            consumer_auto_offset_reset="earliest",
            topic_partitions=kafka.partitions,
            web_enabled=False,
            store="memory://",
            # large fetches and producer batches: a run reads a bounded backlog as fast as it can
            broker_max_poll_records=tuning.poll_records,
            consumer_max_fetch_size=16 * 1024 * 1024,
            producer_max_batch_size=1024 * 1024,
            producer_linger_ms=5,
            key_serializer="raw",
            value_serializer="raw",
        )
        app.batch_handler = self.handle_batch
        self.source_topics = [kafka.cdc_topic(e) for e in self.run.entities]
        self.source = app.topic(*self.source_topics, key_type=bytes, value_type=bytes)
        self.out = app.topic(self.run.run_topic, key_type=bytes, value_type=bytes)
        self.dlq = app.topic(kafka.dlq_topic("processor"), key_type=bytes, value_type=bytes)
        # The agent subscribes the worker to the change topics (and so joins the group);
        # the records themselves arrive in batches through handle_batch (processors/fetch.py).
        app.agent(self.source, name="forward")(self._agent)
        app.timer(0.5)(self._check_done)
        return app

    async def _agent(self, stream: Any) -> None:
        async for _event in stream:  # pragma: no cover - the batch path receives everything
            log.error("record reached the faust stream instead of the batch path")

    async def handle_batch(self, tp: TP, records: Sequence[Any]) -> None:
        """Transform one fetched batch of a partition and commit it in that partition's
        transaction: its outputs and its source offsets become visible together."""
        started = time.monotonic()
        if self.first_event_at is None:
            self.first_event_at = started
        topic, partition = tp.topic, tp.partition
        outs: list[tuple[bytes | None, bytes | None]] = []
        for record in records:
            if not self._wanted(topic, partition, record.offset, record.key, record.value):
                continue
            try:
                out = self._transform(record.key, record.value)
            except InvalidEventError as exc:
                await self._dead_letter(topic, partition, record, str(exc))
            else:
                if out is not None:
                    outs.append(out)
        await self._send_many(partition, outs)
        self.forwarded += len(outs)
        metrics.READ.labels(topic).inc(len(records))
        metrics.FORWARDED.labels(topic).inc(len(outs))
        last = records[-1].offset
        cut = self.run.cut.get(topic, {}).get(partition, 0)
        # A transaction spans batches for up to commit_interval_s: its commit is a few round
        # trips, and the end of the run commits every partition at its cut anyway.
        now = time.monotonic()
        if now - self.committed_at.setdefault(tp, now) >= self.settings.tuning.commit_interval_s:
            await self._commit(tp, min(last + 1, cut))
            self.committed_at[tp] = now
        self.progress.observe_batch(topic, partition, len(records), last)
        metrics.PENDING_PARTITIONS.set(len(self.progress.pending))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        await self._check_done()  # the timer would find out up to half a second later

    def _wanted(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> bool:
        """Cheap checks on the record alone, so most unwanted events are never decoded."""
        if value is None:  # a tombstone after a delete: for compaction, not for exports
            return False
        if not self.progress.in_range(topic, partition, offset):
            return False
        if self.latest is not None and self.latest[topic].get(key or b"") != offset:
            return False  # a full run keeps only each key's last version
        return select(key, self.tenants)

    def _transform(
        self, key: bytes | None, value: bytes | None
    ) -> tuple[bytes | None, bytes | None] | None:
        event = validate(key, self.codec.decode(value), self.entities)
        if self.latest is not None and event["op"] == "d":
            return None  # deleted before the cut: not live, so not in a full export
        out = transform(event, self.spec, self.issue_project)
        if out is None:
            return None
        return output_key(out), self.codec.encode_with(self.run_schemas[out["entity"]], out)

    async def _send(
        self, partition: int, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        """Send one record to run-topic ``partition`` inside source partition ``partition``'s
        transaction (faust's ``Topic.send`` bypasses the transactions even under exactly_once)."""
        producer: Any = self.app.producer
        tid = self._transactional_id(partition)
        if tid is None:
            await producer.send(self.run.run_topic, key, value, partition, None, headers)
        else:
            await producer.send(
                self.run.run_topic, key, value, partition, None, headers, transactional_id=tid
            )

    async def _send_many(
        self, partition: int, outs: list[tuple[bytes | None, bytes | None]]
    ) -> None:
        """Send a batch's outputs to run-topic ``partition`` in as few producer batches as fit.

        faust sends one record per call (a lock, a future and a task each); its aiokafka
        producer of the partition's transaction takes whole batches, under faust's own lock
        for that transaction so a commit never interleaves.
        """
        if not outs:
            return
        producer: Any = self.app.producer
        tid = self._transactional_id(partition)
        if tid is None:
            for key, value in outs:
                await producer.send(self.run.run_topic, key, value, partition, None, None)
            return
        aio = producer._transaction_producers[tid]
        pending = []
        async with producer._trn_locks[tid]:
            batch = aio.create_batch()
            for key, value in outs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(
                        await aio.send_batch(batch, self.run.run_topic, partition=partition)
                    )
                    batch = aio.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await aio.send_batch(batch, self.run.run_topic, partition=partition))
        await asyncio.gather(*pending)

    def _transactional_id(self, partition: int) -> str | None:
        """The id faust's TransactionManager gives source partition ``partition``'s transaction."""
        if self.settings.tuning.guarantee != "exactly_once":
            return None
        group = self.app.assignor.group_for_topic(self.source_topics[0])
        return f"{self.app.conf.id}-{group}-{partition}"

    async def _commit(self, tp: TP, offset: int) -> None:
        consumer: Any = self.app.consumer
        if self.settings.tuning.guarantee == "exactly_once":
            await consumer.transactions.commit({tp: offset}, start_new_transaction=True)
        else:
            await self.app.producer.flush()
            await consumer._commit({tp: offset})

    async def _dead_letter(self, topic: str, partition: int, record: Any, reason: str) -> None:
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.inc()
        headers = {
            "sw-error": reason.encode(),
            "sw-etl-id": self.run.etl_id.encode(),
            "sw-topic": topic.encode(),
            "sw-partition": str(partition).encode(),
            "sw-offset": str(record.offset).encode(),
        }
        await self.dlq.send(key=record.key, value=record.value, headers=headers)
        log.warning(
            "dead-lettered topic=%s partition=%s offset=%s reason=%s",
            topic,
            partition,
            record.offset,
            reason,
        )

    async def _check_done(self) -> None:
        HEALTH.beat()  # the half-second timer runs: the worker's event loop is not stuck
        if self.finished or not self.progress.done:
            return
        self.finished = True
        for partition in range(self.run.run_partitions):
            # the run's dead-letter count travels once, on partition 0's marker, to the manifest
            dead = self.dead_lettered if partition == 0 else 0
            fields = {"etl_id": self.run.etl_id, "partition": partition, "dead_letters": dead}
            marker = json.dumps(fields).encode()
            await self._send(partition, None, marker, [(MARKER_HEADER, END_MARKER)])
        await self._commit_cut()
        self.finished_at = time.monotonic()
        log.info(
            "run %s processed: read=%s forwarded=%s dead_lettered=%s",
            self.run.etl_id,
            self.progress.read,
            self.forwarded,
            self.dead_lettered,
        )
        self.on_finished()

    async def _commit_cut(self) -> None:
        """Commit every partition's transaction with the run's cut as its source offsets.

        faust commits a transaction only when its source partition has newly acked events,
        so the end markers of a partition with nothing left to read would stay uncommitted.
        """
        producer: Any = self.app.producer
        cuts = {
            p: {TopicPartition(t, p): self.run.cut[t][p] for t in self.source_topics}
            for p in range(self.run.run_partitions)
        }
        if self.settings.tuning.guarantee != "exactly_once":
            await producer.flush()
            consumer: Any = self.app.consumer
            await consumer._commit(
                {tp: o for offsets in cuts.values() for tp, o in offsets.items()}
            )
            return
        by_transaction = {self._transactional_id(p): offsets for p, offsets in cuts.items()}
        await producer.commit_transactions(by_transaction, self.app.conf.id)

    def on_finished(self) -> None:
        """Replaced by main() with what stops the worker hosting this app."""
